/* Benchmark peer: a TCP echo server on libuv.
 *
 * Not a course stage: `make bench` compares the stages with what a reader might pick instead.
 * Each loop reads into one buffer of its own, and each chunk read is copied into a write request
 * that uv_write sends (at once if the kernel takes it) and write_cb frees. It keeps the course's
 * server contract, so the same runner and the same tests drive it.
 *
 * --threads N runs N event loops, one uv_loop_t per thread, each with its own listener on the
 * same port (SO_REUSEPORT): the kernel spreads the connections and each connection stays on one
 * loop, as in the course's stage 5. libuv 1.44 (Debian 12) has no reuse-port flag for
 * uv_tcp_bind, so we make and bind each listening socket ourselves, then hand it to
 * uv_tcp_open.
 *
 * Build: cc -std=c11 -O2 uv_server.c -luv
 */

/* POSIX plus the BSD names glibc hides under -std=c11, such as SO_REUSEPORT. */
#define _DEFAULT_SOURCE

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <uv.h>

/* Stop reading from a client that does not read: bytes libuv could not yet hand to the kernel
 * stay below this (the course's stages use the same cap for their owed bytes). */
#define MAX_QUEUED_BYTES (1u << 20)

/* What libuv suggests for a read, and what a loop reads into. */
#define READ_BUFFER_SIZE (64u * 1024)

/* More event loops than this is a typing mistake, not a machine. */
#define MAX_THREADS 1024u

struct options {
  const char* host; /* numeric IPv4 or IPv6; loopback unless asked */
  unsigned port;    /* 0: the kernel picks one */
  unsigned threads; /* event loops */
};

/* One event loop, its listener, the thread that runs it and the buffer its reads go to. */
struct worker {
  uv_loop_t loop; /* loop.data points back here */
  uv_tcp_t listener;
  uv_thread_t thread;
  char read_buffer[READ_BUFFER_SIZE];
};

/* One client. The handle comes first, so a uv_stream_t* or uv_handle_t* libuv passes to a
 * callback is also a pointer to the client; close_cb frees it. */
struct client {
  uv_tcp_t tcp;
  int paused; /* reading stopped until libuv's write queue drains (backpressure) */
};

/* One echoed chunk on its way out, in one allocation that write_cb frees. */
struct echo_write {
  uv_write_t req;
  uv_buf_t buf; /* points at data */
  char data[];
};

static void usage(FILE* out, const char* program) {
  fprintf(out,
          "usage: %s [--host ADDR] [--port N] [--threads N]\n"
          "\n"
          "A TCP echo server on libuv: a benchmark peer of the course.\n"
          "\n"
          "  --host ADDR   numeric IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
          "  --port N      TCP port to listen on, 0 to pick a free one (default 7000)\n"
          "  --threads N   event loops, one uv_loop_t per thread (default 1)\n"
          "  --help        print this help and exit\n",
          program);
}

/* Out of memory is the one failure we do not try to survive. */
static void* xmalloc(size_t size) {
  void* p = malloc(size);
  if (p == NULL) {
    fputs("error: out of memory\n", stderr);
    exit(1);
  }
  return p;
}

/* Accepts only a whole decimal number in [min, max]: no sign, no spaces, no trailing text. */
static int parse_number(const char* text, unsigned long min, unsigned long max, unsigned* value) {
  if (*text == '\0') return -1;
  for (const char* p = text; *p != '\0'; ++p) {
    if (*p < '0' || *p > '9') return -1;
  }
  errno = 0;
  const unsigned long n = strtoul(text, NULL, 10);
  if (errno == ERANGE || n < min || n > max) return -1;
  *value = (unsigned)n;
  return 0;
}

/* Fills addr from a numeric address; never a DNS lookup. Returns 0, or -1 if it is not one. */
static int make_address(const char* host, unsigned port, struct sockaddr_storage* addr) {
  memset(addr, 0, sizeof *addr);
  if (uv_ip4_addr(host, (int)port, (struct sockaddr_in*)addr) == 0) return 0;
  if (uv_ip6_addr(host, (int)port, (struct sockaddr_in6*)addr) == 0) return 0;
  return -1;
}

/* Returns 0 to run, 1 after --help, 2 after a usage error (already reported). */
static int parse_command_line(int argc, char** argv, struct options* options) {
  const char* program = argc > 0 ? argv[0] : "uv_server";
  for (int i = 1; i < argc; ++i) {
    const char* flag = argv[i];
    if (strcmp(flag, "--help") == 0) return 1;
    if (strcmp(flag, "--host") != 0 && strcmp(flag, "--port") != 0 &&
        strcmp(flag, "--threads") != 0) {
      fprintf(stderr, "error: %s '%s'\n", flag[0] == '-' ? "unknown option" : "unexpected argument",
              flag);
      usage(stderr, program);
      return 2;
    }
    if (i + 1 == argc) {
      fprintf(stderr, "error: %s needs a value\n", flag);
      usage(stderr, program);
      return 2;
    }
    const char* value = argv[++i];
    struct sockaddr_storage scratch;
    if (strcmp(flag, "--host") == 0) {
      if (make_address(value, 0, &scratch) != 0) {
        fprintf(stderr, "error: --host: '%s' is not a numeric IPv4 or IPv6 address\n", value);
        usage(stderr, program);
        return 2;
      }
      options->host = value;
    } else if (strcmp(flag, "--port") == 0) {
      if (parse_number(value, 0, 65535, &options->port) != 0) {
        fprintf(stderr, "error: --port: '%s' is not a number from 0 to 65535\n", value);
        usage(stderr, program);
        return 2;
      }
    } else if (parse_number(value, 1, MAX_THREADS, &options->threads) != 0) {
      fprintf(stderr, "error: --threads: '%s' is not a number from 1 to %u\n", value, MAX_THREADS);
      usage(stderr, program);
      return 2;
    }
  }
  return 0;
}

/* "127.0.0.1:7000", or "[::1]:7000" for IPv6. */
static void format_address(const struct sockaddr_storage* addr, char* text, size_t size) {
  char name[INET6_ADDRSTRLEN] = "";
  uv_ip_name((const struct sockaddr*)addr, name, sizeof name);
  if (addr->ss_family == AF_INET6) {
    snprintf(text, size, "[%s]:%u", name,
             (unsigned)ntohs(((const struct sockaddr_in6*)addr)->sin6_port));
  } else {
    snprintf(text, size, "%s:%u", name,
             (unsigned)ntohs(((const struct sockaddr_in*)addr)->sin_port));
  }
}

static void close_cb(uv_handle_t* handle) {
  free(handle);
}

static void close_client(uv_stream_t* stream) {
  if (!uv_is_closing((uv_handle_t*)stream)) uv_close((uv_handle_t*)stream, close_cb);
}

static void alloc_cb(uv_handle_t* handle, size_t suggested_size, uv_buf_t* buf) {
  (void)suggested_size;
  /* libuv calls read_cb right after the read, on this thread, before any other read of this
   * loop, and read_cb copies what it keeps: one buffer per loop serves every client. The
   * guide's malloc of 64 KiB per read, freed after the write, ran at 0.6 rather than 1.5
   * million 64-byte echoes/s on a 2-core test machine; raising glibc's malloc trim threshold
   * won back part of it, so much of the cost is the heap top returned to the kernel and
   * faulted in again. */
  struct worker* worker = handle->loop->data;
  *buf = uv_buf_init(worker->read_buffer, sizeof worker->read_buffer);
}

static void shutdown_cb(uv_shutdown_t* req, int status) {
  (void)status; /* sent or not, this client is done */
  close_client(req->handle);
  free(req);
}

static void read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf);

static void write_cb(uv_write_t* req, int status) {
  uv_stream_t* stream = req->handle;
  free(req); /* the whole echo_write: req is its first member */
  if (status < 0) {
    /* A reset or EPIPE (reported here, not by SIGPIPE, which main ignores), or UV_ECANCELED
     * because the client is already closing. */
    close_client(stream);
    return;
  }
  struct client* client = (struct client*)stream;
  if (client->paused && uv_stream_get_write_queue_size(stream) < MAX_QUEUED_BYTES) {
    client->paused = 0;
    uv_read_start(stream, alloc_cb, read_cb);
  }
}

static void read_cb(uv_stream_t* stream, ssize_t nread, const uv_buf_t* buf) {
  if (nread > 0) {
    struct echo_write* w = xmalloc(sizeof *w + (size_t)nread);
    memcpy(w->data, buf->base, (size_t)nread);
    w->buf = uv_buf_init(w->data, (unsigned)nread);
    if (uv_write(&w->req, stream, &w->buf, 1, write_cb) != 0) {
      free(w);
      close_client(stream);
      return;
    }
    /* uv_write sends what the kernel takes at once and queues the rest; a queue that keeps
     * growing means the client does not read its echo. */
    if (uv_stream_get_write_queue_size(stream) >= MAX_QUEUED_BYTES) {
      ((struct client*)stream)->paused = 1;
      uv_read_stop(stream);
    }
    return;
  }
  /* nread 0 is EAGAIN: nothing to do until the next readiness. */
  if (nread == UV_EOF) {
    /* The client half-closed. uv_shutdown waits for the queued echo to be written, then sends
     * our FIN; shutdown_cb closes the handle. */
    uv_shutdown_t* req = xmalloc(sizeof *req);
    if (uv_shutdown(req, stream, shutdown_cb) != 0) {
      free(req);
      close_client(stream);
    }
  } else if (nread < 0) {
    close_client(stream); /* ECONNRESET and the like end this client only */
  }
}

static void connection_cb(uv_stream_t* listener, int status) {
  /* libuv reports accept errors here. On EMFILE it has already used its spare descriptor to
   * accept and close the waiting connections, so the loop does not spin. */
  if (status < 0) return;
  struct client* client = xmalloc(sizeof *client);
  client->paused = 0;
  uv_tcp_init(listener->loop, &client->tcp);
  if (uv_accept(listener, (uv_stream_t*)&client->tcp) != 0) {
    close_client((uv_stream_t*)&client->tcp);
    return;
  }
  /* An echo answers small writes at once; Nagle's algorithm would hold them back. */
  uv_tcp_nodelay(&client->tcp, 1);
  uv_read_start((uv_stream_t*)&client->tcp, alloc_cb, read_cb);
}

static void set_option(int fd, int name, const char* what) {
  const int on = 1;
  if (setsockopt(fd, SOL_SOCKET, name, &on, sizeof on) != 0) {
    fprintf(stderr, "error: setsockopt %s: %s\n", what, strerror(errno));
    exit(1);
  }
}

/* A bound socket on addr (SO_REUSEPORT if others will share its port), or exit 1. */
static int bind_socket(const struct sockaddr_storage* addr, int reuse_port) {
  int fd = socket(addr->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    fprintf(stderr, "error: socket: %s\n", strerror(errno));
    exit(1);
  }
  /* Lets a restarted server bind while the last run's connections sit in TIME_WAIT. */
  set_option(fd, SO_REUSEADDR, "SO_REUSEADDR");
  if (reuse_port) set_option(fd, SO_REUSEPORT, "SO_REUSEPORT");
  const socklen_t len =
      addr->ss_family == AF_INET6 ? sizeof(struct sockaddr_in6) : sizeof(struct sockaddr_in);
  if (bind(fd, (const struct sockaddr*)addr, len) != 0) {
    const int bind_errno = errno;
    char text[INET6_ADDRSTRLEN + 8];
    format_address(addr, text, sizeof text);
    fprintf(stderr, "error: bind %s: %s\n", text, strerror(bind_errno));
    exit(1);
  }
  return fd;
}

/* Gives worker its loop and a listener on fd, which libuv then owns; exits 1 on failure. */
static void start_listening(struct worker* worker, int fd) {
  int err = uv_loop_init(&worker->loop);
  worker->loop.data = worker;
  if (err == 0) err = uv_tcp_init(&worker->loop, &worker->listener);
  if (err == 0) err = uv_tcp_open(&worker->listener, fd);
  /* A short accept queue refuses or stalls a burst of connects; the kernel caps this at
   * net.core.somaxconn. */
  if (err == 0) err = uv_listen((uv_stream_t*)&worker->listener, SOMAXCONN, connection_cb);
  if (err != 0) {
    fprintf(stderr, "error: listen: %s\n", uv_strerror(err));
    exit(1);
  }
}

static void run_worker(void* arg) {
  struct worker* worker = arg;
  uv_run(&worker->loop, UV_RUN_DEFAULT);
}

int main(int argc, char** argv) {
  struct options options = {"127.0.0.1", 7000, 1};
  switch (parse_command_line(argc, argv, &options)) {
    case 0:
      break;
    case 1:
      usage(stdout, argc > 0 ? argv[0] : "uv_server");
      return 0;
    default:
      return 2;
  }
  /* libuv writes with write(2), which raises SIGPIPE on a reset connection and would kill
   * the process; ignored, the write fails with EPIPE and write_cb closes that client. */
  signal(SIGPIPE, SIG_IGN);

  struct sockaddr_storage addr;
  make_address(options.host, options.port, &addr); /* checked by parse_command_line */
  struct worker* workers = xmalloc(options.threads * sizeof *workers);
  const int reuse_port = options.threads > 1;
  const int first = bind_socket(&addr, reuse_port);
  /* The first socket bound the requested port (0 = any); the others reuse the one it got. */
  socklen_t len = sizeof addr;
  if (getsockname(first, (struct sockaddr*)&addr, &len) != 0) {
    fprintf(stderr, "error: getsockname: %s\n", strerror(errno));
    return 1;
  }
  start_listening(&workers[0], first);
  for (unsigned i = 1; i < options.threads; ++i) {
    start_listening(&workers[i], bind_socket(&addr, reuse_port));
  }
  char text[INET6_ADDRSTRLEN + 8];
  format_address(&addr, text, sizeof text);
  /* Flushed at once: scripts and tests wait for this line before they connect. */
  printf("listening on %s\n", text);
  fflush(stdout);

  /* Each loop was set up before its thread starts, and from then on only that thread
   * touches it. */
  for (unsigned i = 1; i < options.threads; ++i) {
    if (uv_thread_create(&workers[i].thread, run_worker, &workers[i]) != 0) {
      fputs("error: uv_thread_create failed\n", stderr);
      return 1;
    }
  }
  run_worker(&workers[0]);
  return 0;
}
