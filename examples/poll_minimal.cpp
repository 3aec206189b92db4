// A minimal poll(2) echo server: many clients at once, on one thread.
//
//   poll_minimal [--host IPV4] [--port N]      (defaults 127.0.0.1 and 7000; port 0: any)
//
// Every socket is non-blocking, and one poll() call waits for all of them at once. Chapter 01
// starts here and then hardens it, step by step, into 01-poll/. Left out on purpose: the bytes
// send() does not take are lost, a client that never reads is not slowed down, a half-close
// ends the connection at once, SIGPIPE can end the server, and running out of descriptors or a
// failed listener makes the loop spin.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>
#include <vector>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7000;
};

// Reads `--host IPV4` and `--port N` pairs; false on anything else.
bool parse_command_line(int argc, char** argv, Options& options) {
  if (argc % 2 == 0) return false;  // a flag without its value
  for (int i = 1; i < argc; i += 2) {
    const std::string_view flag = argv[i];
    const std::string_view value = argv[i + 1];
    const char* end = value.data() + value.size();
    if (flag == "--host") {
      options.host = value;
    } else if (flag == "--port") {
      const auto [stop, error] = std::from_chars(value.data(), end, options.port);
      if (error != std::errc() || stop != end) return false;
    } else {
      return false;
    }
  }
  return true;
}

// Opens the listening socket, non-blocking, and prints the line scripts wait for; -1 after an
// error.
int listen_on(const Options& options) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(options.port);
  if (inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "error: --host %s: not an IPv4 address\n", options.host.c_str());
    return -1;
  }
  const int listener = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
  if (listener < 0) {
    std::perror("error: socket");
    return -1;
  }
  const int on = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  socklen_t len = sizeof addr;
  if (bind(listener, reinterpret_cast<const sockaddr*>(&addr), len) != 0 ||
      listen(listener, SOMAXCONN) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("error: bind or listen");
    return -1;
  }
  std::printf("listening on %s:%u\n", options.host.c_str(), unsigned{ntohs(addr.sin_port)});
  std::fflush(stdout);
  return listener;
}

// Reads once from a client that poll() reported and echoes what came; false when the client
// is done (end-of-file or an error), so the caller closes it.
bool echo_once(int client) {
  char buffer[64 * 1024];
  const ssize_t n = recv(client, buffer, sizeof buffer, 0);
  if (n > 0) {
    // What send() does not take now is lost: chapter 01 keeps it as owed bytes.
    (void)send(client, buffer, static_cast<std::size_t>(n), 0);
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse_command_line(argc, argv, options)) {
    std::fputs("usage: poll_minimal [--host IPV4] [--port N]\n", stderr);
    return 2;
  }
  const int listener = listen_on(options);
  if (listener < 0) return 1;
  // The interest set: pollfds[0] is the listener, every later entry one client.
  std::vector<pollfd> pollfds{{listener, POLLIN, 0}};
  for (;;) {
    // 1. Sleep until at least one socket is ready.
    if (poll(pollfds.data(), pollfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("error: poll");
      return 1;
    }
    // 2. Accept every client waiting in the queue; each joins the table with no events yet.
    if (pollfds[0].revents != 0) {
      int client;
      while ((client = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK)) >= 0) {
        pollfds.push_back({client, POLLIN, 0});
      }
    }
    // 3. Serve each ready client, from the last entry to the first: a closed client's slot
    //    takes the last entry, which this walk has already passed.
    for (std::size_t i = pollfds.size(); i-- > 1;) {
      if (pollfds[i].revents != 0 && !echo_once(pollfds[i].fd)) {
        close(pollfds[i].fd);
        pollfds[i] = pollfds.back();
        pollfds.pop_back();
      }
    }
  }
}
