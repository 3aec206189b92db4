// broken_server: the shared suite's deliberately broken fixture, a poll(2) echo server.
//
// Without --bug it meets the whole server contract of SPEC.md, so every behaviour test passes
// against it. `--bug NAME` switches on exactly one classic mistake; each lives in a few lines
// guarded by `bug == Bug::k...` where that mistake is usually made, under a comment naming it.
// The suite's self-test runs a test against the mode meant to break it and expects a failure.
// Built for that self-test only: the numbered stages are the code to learn from.

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/select.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <iterator>
#include <span>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

namespace {

enum class Bug {
  kNone,
  kCString,
  kDropPartialWrite,
  kNoBackpressure,
  kSigpipe,
  kEmfileSpin,
  kHalfCloseDrop,
  kFdLeak,
  kTinyBacklog,
  kBlockingAccept,
  kPolloutArmed,
  kWriteRetryLoop,
  kNoBudget,
  kFdSetsize,
  kNoReuseaddr,
  kCliExitCodes,
  kCliAtoi,
  kIpv4Only,
  kIgnoresHost,
  kBindAbort,
  kPrintRequestedPort,
  kStdoutBuffered,
  kWrongDefaultPort,
  kEofIgnored,
  kCloseOnRdhup,
  kErrorsFatal,
  kNoNodelay,
  kEintrFatal,
  kEagainFatal,
  kListenerErrorsIgnored,
};

struct BugMode {
  std::string_view name;  // as given to --bug
  Bug bug;
  std::string_view mistake;  // one line for --help
};

constexpr BugMode kBugModes[] = {
    {"none", Bug::kNone, "no mistake: a correct echo server (the default)"},
    {"cstring", Bug::kCString, "echoes each received chunk only up to its first NUL byte"},
    {"drop_partial_write", Bug::kDropPartialWrite, "drops what a short or failed send() left"},
    {"no_backpressure", Bug::kNoBackpressure, "reads on however much a client is owed"},
    {"sigpipe", Bug::kSigpipe, "sends without MSG_NOSIGNAL: dies of SIGPIPE on a reset peer"},
    {"emfile_spin", Bug::kEmfileSpin, "ignores EMFILE on accept: poll() spins"},
    {"halfclose_drop", Bug::kHalfCloseDrop, "closes at the client's EOF, dropping owed bytes"},
    {"fd_leak", Bug::kFdLeak, "never closes a connection that ends in an error"},
    {"tiny_backlog", Bug::kTinyBacklog, "listen(fd, 3)"},
    {"blocking_accept", Bug::kBlockingAccept, "accepts on a blocking listener until it fails"},
    {"pollout_armed", Bug::kPolloutArmed, "asks for POLLOUT on every client, owed bytes or not"},
    {"write_retry_loop", Bug::kWriteRetryLoop, "retries send() in a tight loop on EAGAIN"},
    {"no_budget", Bug::kNoBudget, "reads one ready client until EAGAIN before any other"},
    {"fd_setsize", Bug::kFdSetsize, "closes clients whose descriptor is >= FD_SETSIZE"},
    {"no_reuseaddr", Bug::kNoReuseaddr, "no SO_REUSEADDR: a restart finds the port in use"},
    {"cli_exit_codes", Bug::kCliExitCodes, "usage errors on stdout with exit 1; --help exits 1"},
    {"cli_atoi", Bug::kCliAtoi, "--port through atoi() and a cast: no error, ever"},
    {"ipv4_only", Bug::kIpv4Only, "--host takes IPv4 addresses only"},
    {"ignores_host", Bug::kIgnoresHost, "binds 0.0.0.0 whatever --host says"},
    {"bind_abort", Bug::kBindAbort, "a failing bind() throws an exception nobody catches"},
    {"print_requested_port", Bug::kPrintRequestedPort, "prints the port asked for, 0 included"},
    {"stdout_buffered", Bug::kStdoutBuffered, "never flushes the listening line"},
    {"wrong_default_port", Bug::kWrongDefaultPort, "listens on 8080 without --port"},
    {"eof_ignored", Bug::kEofIgnored, "takes recv() == 0 for no data: never closes, spins"},
    {"close_on_rdhup", Bug::kCloseOnRdhup, "closes on POLLRDHUP before reading what came with it"},
    {"errors_fatal", Bug::kErrorsFatal, "exits when a recv() or send() fails (a reset client)"},
    {"no_nodelay", Bug::kNoNodelay, "leaves Nagle's algorithm on (no TCP_NODELAY)"},
    {"eintr_fatal", Bug::kEintrFatal, "exits when a signal interrupts poll() (EINTR)"},
    {"eagain_fatal", Bug::kEagainFatal, "drains each client, then closes it on the EAGAIN"},
    {"listener_errors_ignored", Bug::kListenerErrorsIgnored,
     "accepts on POLLIN only: a failed listener's POLLHUP spins"},
};

Bug bug = Bug::kNone;  // set once by main(), before any socket exists

// Backpressure: stop reading a client once this much of its echo is owed to it, so a client
// that sends without reading fills the kernel's buffers (and TCP slows it), not our memory.
constexpr std::size_t kMaxOwedBytes = 1 << 20;
// One recv() per readiness into a buffer shared by every client: the most one client is served
// per round, so a flooding client cannot make the others wait long.
constexpr std::size_t kReadSize = 64 * 1024;
// A connect burst is taken in rounds of this many, between which the clients are served.
constexpr int kAcceptsPerRound = 64;
// How long the listener rests when no descriptor is left for a new client: long enough that
// poll() does not spin, short enough that service resumes soon after descriptors free up.
constexpr std::chrono::milliseconds kAcceptPause{100};

// The one owner of a descriptor: closes it when destroyed, unless release() gave it up.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& from) noexcept : fd_(from.release()) {}
  Fd& operator=(Fd&& from) noexcept {
    if (this != &from) reset(from.release());
    return *this;
  }
  ~Fd() { reset(); }
  int get() const { return fd_; }
  explicit operator bool() const { return fd_ >= 0; }
  int release() { return std::exchange(fd_, -1); }
  // Linux frees the descriptor even when close() fails, so a retry could close a reused one.
  void reset(int fd = -1) {
    if (fd_ >= 0) ::close(fd_);
    fd_ = fd;
  }

 private:
  int fd_ = -1;
};

// A call failed that the server cannot carry on from: one line naming it and the error, exit 1.
[[noreturn]] void die(std::string_view what, int err) {
  std::cerr << "error: " << what << ": " << std::strerror(err) << std::endl;
  std::exit(1);
}

// --- command line ---------------------------------------------------------------------------

std::string usage() {
  std::string text =
      "usage: broken_server [--host ADDR] [--port N] [--bug NAME]\n\n"
      "The shared suite's broken fixture: an echo server on poll(2) that is correct until\n"
      "--bug NAME (or --bug=NAME) switches on one classic mistake.\n\n"
      "  --host ADDR  numeric IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
      "  --port N     TCP port, 0 for any free one (default 7000)\n"
      "  --help       print this help and exit\n"
      "  --bug NAME   one of:\n";
  std::size_t width = 0;
  for (const BugMode& mode : kBugModes)
    width = std::max(width, mode.name.size());
  for (const BugMode& mode : kBugModes) {
    text += "    " + std::string(mode.name) + std::string(width + 2 - mode.name.size(), ' ');
    text += std::string(mode.mistake) + "\n";
  }
  return text;
}

int usage_error(const std::string& what) {
  // bug cli_exit_codes: the error goes to stdout, and exit 1 looks like a runtime failure.
  if (bug == Bug::kCliExitCodes) {
    std::cout << "error: " << what << "\n" << usage();
    return 1;
  }
  std::cerr << "error: " << what << "\n" << usage();
  return 2;
}

in_port_t& port_field(sockaddr_storage& addr) {
  return addr.ss_family == AF_INET6 ? reinterpret_cast<sockaddr_in6&>(addr).sin6_port
                                    : reinterpret_cast<sockaddr_in&>(addr).sin_port;
}

// Fills addr from a numeric IPv4 or IPv6 address (never a DNS lookup); false for anything else.
bool make_address(const std::string& host, std::uint16_t port, sockaddr_storage& addr) {
  addr = {};
  auto& v4 = reinterpret_cast<sockaddr_in&>(addr);
  auto& v6 = reinterpret_cast<sockaddr_in6&>(addr);
  if (inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    addr.ss_family = AF_INET;
    // bug ipv4_only: no AF_INET6 attempt, so "--host ::1" is a bad address.
  } else if (bug != Bug::kIpv4Only && inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
    addr.ss_family = AF_INET6;
  } else {
    return false;
  }
  port_field(addr) = htons(port);
  return true;
}

// "127.0.0.1:7000", or "[::1]:7000" for IPv6.
std::string describe(sockaddr_storage addr) {
  char text[INET6_ADDRSTRLEN] = {};
  const bool v6 = addr.ss_family == AF_INET6;
  const void* raw = v6 ? static_cast<const void*>(&reinterpret_cast<sockaddr_in6&>(addr).sin6_addr)
                       : &reinterpret_cast<sockaddr_in&>(addr).sin_addr;
  inet_ntop(addr.ss_family, raw, text, sizeof text);
  const std::string port = ":" + std::to_string(ntohs(port_field(addr)));
  return v6 ? "[" + std::string(text) + "]" + port : text + port;
}

// A whole decimal number from 0 to 65535: no sign, no spaces, nothing after it.
bool parse_port(const std::string& text, std::uint16_t& port) {
  // bug cli_atoi: atoi() reads "abc" as 0 and "7000x" as 7000; the cast wraps 70000 to 4464.
  if (bug == Bug::kCliAtoi) {
    port = static_cast<std::uint16_t>(std::atoi(text.c_str()));
    return true;
  }
  unsigned value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, status] = std::from_chars(text.data(), end, value);
  if (status != std::errc() || stop != end || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
}

// --- connections ----------------------------------------------------------------------------

// One client: owns its socket and the echo still owed to it (read, not yet sent back).
struct Connection {
  explicit Connection(Fd client) : socket(std::move(client)) {}

  Fd socket;
  std::vector<char> owed;    // owed[sent..] is owed; no heap memory while nothing is owed
  std::size_t sent = 0;      // bytes at the front of owed already sent
  bool peer_closed = false;  // recv() returned 0: the client shut down its writing side
  bool broken = false;       // reset or another error: close without flushing

  std::size_t owed_bytes() const { return owed.size() - sent; }
  bool wants_read() const {
    // bug no_backpressure: reads on whatever is owed: memory grows with a client that never reads.
    const bool capped = owed_bytes() >= kMaxOwedBytes && bug != Bug::kNoBackpressure;
    return !peer_closed && !broken && !capped;
  }
  // Closed after an error, or once a half-closed client has every byte back.
  bool finished() const { return broken || (peer_closed && owed_bytes() == 0); }
};

// The interest set of a connection, derived from its state here and nowhere else.
short interest(const Connection& conn) {
  short events = conn.wants_read() ? POLLIN : 0;
  if (bug == Bug::kCloseOnRdhup) events |= POLLRDHUP;
  // POLLOUT only while bytes are owed: a socket with room in its send buffer is always writable,
  // so asking anyway makes every poll() return at once.
  // bug pollout_armed: asks anyway: a busy loop even when every client is idle.
  if (conn.owed_bytes() > 0 || bug == Bug::kPolloutArmed) events |= POLLOUT;
  return events;
}

// bug errors_fatal: one client's failure taken for the server's: the whole server exits.
void die_if_errors_fatal(const char* call) {
  if (bug == Bug::kErrorsFatal) die(call, errno);
}

// Sends what the socket takes now; returns how many bytes that was (0 when its buffer is full).
std::size_t send_some(Connection& conn, std::span<const char> bytes) {
  // MSG_NOSIGNAL: a send to a reset peer then fails with EPIPE instead of raising SIGPIPE,
  // whose default action kills the whole server.
  // bug sigpipe: no MSG_NOSIGNAL, and SIGPIPE keeps its default action.
  const int flags = bug == Bug::kSigpipe ? 0 : MSG_NOSIGNAL;
  std::size_t sent = 0;
  while (sent < bytes.size()) {
    const ssize_t n = send(conn.socket.get(), bytes.data() + sent, bytes.size() - sent, flags);
    if (n >= 0) {
      sent += static_cast<std::size_t>(n);
      if (bug != Bug::kWriteRetryLoop) break;  // short: the send buffer is full for now
    } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
      // bug write_retry_loop: spins until this client reads, while every other client waits.
      if (bug != Bug::kWriteRetryLoop) break;
    } else if (errno != EINTR) {  // EINTR: a signal came before any byte went; send again
      die_if_errors_fatal("send");
      conn.broken = true;  // EPIPE, ECONNRESET, ...: the client is gone
      break;
    }
  }
  // bug drop_partial_write: ignores the count, as if every byte had gone out.
  return bug == Bug::kDropPartialWrite ? bytes.size() : sent;
}

void echo(Connection& conn, std::span<const char> bytes) {
  // While older bytes are owed these wait behind them: sending them first would reorder.
  const std::size_t sent = conn.owed_bytes() == 0 ? send_some(conn, bytes) : 0;
  if (!conn.broken) conn.owed.insert(conn.owed.end(), bytes.begin() + sent, bytes.end());
}

void on_writable(Connection& conn) {
  conn.sent += send_some(conn, std::span<const char>(conn.owed).subspan(conn.sent));
  if (conn.sent == conn.owed.size()) {
    std::vector<char>().swap(conn.owed);  // all sent: give the memory back, not just the bytes
    conn.sent = 0;
  } else if (conn.sent >= conn.owed.size() / 2) {
    // Dropping the sent front only once it is half the buffer moves each byte at most once.
    conn.owed.erase(conn.owed.begin(), conn.owed.begin() + static_cast<std::ptrdiff_t>(conn.sent));
    conn.sent = 0;
  }
}

// One recv() (bounded by the buffer) and its echo, or the client's EOF, or its error.
void on_readable(Connection& conn, std::span<char> buffer) {
  do {
    ssize_t n;
    do {
      n = recv(conn.socket.get(), buffer.data(), buffer.size(), 0);
    } while (n < 0 && errno == EINTR);
    if (n < 0) {
      // EAGAIN: the readiness was stale. Anything else (ECONNRESET, ...): the client is gone.
      // bug eagain_fatal: "nothing more for now" taken for a failure: the client is closed.
      if ((errno == EAGAIN || errno == EWOULDBLOCK) && bug != Bug::kEagainFatal) return;
      die_if_errors_fatal("recv");
      conn.broken = true;
      return;
    }
    // bug eof_ignored: EOF taken for "no data yet": never closed, and readable forever (a spin).
    if (n == 0 && bug == Bug::kEofIgnored) return;
    if (n == 0) {
      conn.peer_closed = true;  // a half-close: the client still reads what it is owed
      // bug halfclose_drop: closes at EOF at once, dropping the echo still owed.
      if (bug == Bug::kHalfCloseDrop) conn.sent = conn.owed.size();
      return;
    }
    auto size = static_cast<std::size_t>(n);
    // bug cstring: strlen() on binary data: the echo stops at the chunk's first NUL byte.
    if (bug == Bug::kCString) size = strnlen(buffer.data(), size);
    echo(conn, buffer.first(size));
    // bug no_budget: serves this client until EAGAIN (or its cap) while the others wait.
    // bug eagain_fatal: drains until EAGAIN too, as edge-triggered code must.
  } while ((bug == Bug::kNoBudget || bug == Bug::kEagainFatal) && conn.wants_read());
}

// --- the loop -------------------------------------------------------------------------------

// Network errors of one queued client that accept(2) says to treat like EAGAIN: skip it.
constexpr int kClientErrors[] = {ECONNABORTED, EPROTO,      EPERM,    ENETDOWN,
                                 ENOPROTOOPT,  EHOSTDOWN,   ENONET,   EHOSTUNREACH,
                                 EOPNOTSUPP,   ENETUNREACH, ETIMEDOUT};

Fd open_spare() {
  return Fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
}

// The loop: owns the listener, every connection, a spare descriptor and the read buffer.
class Server {
 public:
  explicit Server(Fd listener) : listener_(std::move(listener)), spare_(open_spare()) {
    if (!spare_) die("open /dev/null", errno);
    pollfds_.push_back({listener_.get(), POLLIN, 0});
  }

  [[noreturn]] void run() {
    for (;;) {
      // 1. Wait for readiness, or for the paused listener's time to resume.
      if (poll(pollfds_.data(), pollfds_.size(), poll_timeout_ms()) < 0) {
        // bug eintr_fatal: an interrupted wait taken for a broken one.
        if (errno == EINTR && bug != Bug::kEintrFatal) continue;
        die("poll", errno);
      }
      // 2. New clients.
      if (paused() && std::chrono::steady_clock::now() >= accept_resumes_at_) {
        if (!spare_) spare_ = open_spare();
        pollfds_[0].events = POLLIN;
      }
      // POLLERR, POLLHUP and POLLNVAL come unasked, paused or not: the listener has failed, and
      // the accept() they lead to fails with the error that says how, which ends the server.
      // bug listener_errors_ignored: POLLIN only: the hang-up comes back at every poll(), a spin.
      const short accept_on =
          bug == Bug::kListenerErrorsIgnored ? POLLIN : POLLIN | POLLERR | POLLHUP | POLLNVAL;
      if (pollfds_[0].revents & accept_on) accept_ready();
      // 3. Ready clients. POLLHUP and POLLERR come unasked; the recv() or send() they lead to
      //    reports the EOF or the error.
      for (std::size_t i = 0; i < connections_.size(); ++i) {
        Connection& conn = connections_[i];
        const short revents = pollfds_[i + 1].revents;
        // bug close_on_rdhup: the client only half-closed, and data may have come with its FIN.
        if (bug == Bug::kCloseOnRdhup && (revents & (POLLRDHUP | POLLHUP))) conn.broken = true;
        if ((revents & (POLLIN | POLLHUP | POLLERR)) && conn.wants_read()) {
          on_readable(conn, read_buffer_);
        }
        if ((revents & (POLLOUT | POLLHUP | POLLERR)) && conn.owed_bytes() > 0 && !conn.broken) {
          on_writable(conn);
        }
      }
      // 4. Close what finished, and renew everyone else's interest set.
      sweep();
    }
  }

 private:
  bool paused() const { return pollfds_[0].events == 0; }

  int poll_timeout_ms() const {
    if (!paused()) return -1;
    const auto left = std::chrono::ceil<std::chrono::milliseconds>(
        accept_resumes_at_ - std::chrono::steady_clock::now());
    return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
  }

  void pause_accepting() {
    pollfds_[0].events = 0;
    accept_resumes_at_ = std::chrono::steady_clock::now() + kAcceptPause;
  }

  void accept_ready() {
    // bug blocking_accept: no cap, on a blocking listener: the accept() that finds the queue
    // empty blocks the whole server until the next client connects.
    for (int n = 0; n < kAcceptsPerRound || bug == Bug::kBlockingAccept; ++n) {
      Fd client(accept4(listener_.get(), nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
      const int err = errno;
      if (client) {
        add_client(std::move(client));
      } else if (err == EAGAIN || err == EWOULDBLOCK) {
        return;  // the queue is empty
      } else if (err == EMFILE || err == ENFILE) {
        // bug emfile_spin: the client stays queued, so poll() reports the listener again at once.
        if (bug == Bug::kEmfileSpin) return;
        if (!shed_one_client()) return;
      } else if (err == ENOBUFS || err == ENOMEM) {
        pause_accepting();  // the kernel is short of memory: give it time
        return;
      } else if (err != EINTR && std::ranges::find(kClientErrors, err) == std::end(kClientErrors)) {
        die("accept", err);
      }
    }
  }

  // Out of descriptors (EMFILE: ours, ENFILE: the system's). The client stays queued, so poll()
  // would report the listener readable at once, forever. Instead free the spare descriptor,
  // accept the client and close it (it sees EOF, not a hang), then take the spare back.
  // Returns false when accepting had to pause instead.
  bool shed_one_client() {
    bool still_out = true;
    if (spare_) {
      spare_.reset();
      Fd doomed(accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      still_out = !doomed && (errno == EMFILE || errno == ENFILE);
      doomed.reset();  // before reopening the spare, which needs its descriptor
      spare_ = open_spare();
    }
    // Under ENFILE another process may take the freed descriptor first: without a spare, or
    // when even that did not let us accept, stop watching the listener for a while.
    if (!still_out && spare_) return true;
    pause_accepting();
    return false;
  }

  void add_client(Fd socket) {
    // bug fd_setsize: a select() server cannot watch a descriptor >= FD_SETSIZE, so drops it.
    if (bug == Bug::kFdSetsize && socket.get() >= FD_SETSIZE) return;
    // TCP_NODELAY: Nagle would hold a small echo back while an earlier one is unacknowledged,
    // up to the client's delayed ACK (40 ms). If setting it failed, the echo would only be slower.
    // bug no_nodelay: the option is never set.
    const int on = 1;
    if (bug != Bug::kNoNodelay) {
      (void)setsockopt(socket.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
    }
    pollfds_.push_back({socket.get(), 0, 0});  // no events: the sweep sets its interest
    connections_.emplace_back(std::move(socket));
  }

  // Closes the finished connections, keeping both tables dense and parallel, and sets every
  // other connection's interest set from its state.
  void sweep() {
    std::size_t kept = 0;
    for (std::size_t i = 0; i < connections_.size(); ++i) {
      if (connections_[i].finished()) {
        // bug fd_leak: the error path forgets to close: the descriptor stays open for good.
        if (bug == Bug::kFdLeak && connections_[i].broken) connections_[i].socket.release();
        connections_[i].socket.reset();
        continue;
      }
      if (kept != i) {
        connections_[kept] = std::move(connections_[i]);
        pollfds_[kept + 1] = pollfds_[i + 1];
      }
      pollfds_[kept + 1].events = interest(connections_[kept]);
      ++kept;
    }
    connections_.erase(connections_.begin() + static_cast<std::ptrdiff_t>(kept),
                       connections_.end());
    pollfds_.resize(kept + 1);
  }

  Fd listener_;
  Fd spare_;  // held in reserve, freed to accept and close one client when out of descriptors
  std::vector<pollfd> pollfds_;  // [0] the listener, [i + 1] connections_[i]
  std::vector<Connection> connections_;
  std::vector<char> read_buffer_ = std::vector<char>(kReadSize);  // every recv() reads into it
  std::chrono::steady_clock::time_point accept_resumes_at_;       // while the listener is paused
};

// A listening socket for addr: non-blocking, close-on-exec, SO_REUSEADDR. Exits on failure.
Fd listen_on(sockaddr_storage addr) {
  // bug ignores_host: binds every interface, whatever --host asked for.
  if (bug == Bug::kIgnoresHost) {
    const in_port_t port = port_field(addr);
    addr = {};
    addr.ss_family = AF_INET;
    port_field(addr) = port;  // and sin_addr stays INADDR_ANY (all zeros)
  }
  // bug blocking_accept: the listener stays blocking.
  const int blocking = bug == Bug::kBlockingAccept ? 0 : SOCK_NONBLOCK;
  Fd fd(socket(addr.ss_family, SOCK_STREAM | SOCK_CLOEXEC | blocking, 0));
  if (!fd) die("socket", errno);
  // Without SO_REUSEADDR a restarted server cannot bind its port while connections of the
  // previous run sit in TIME_WAIT (up to a minute).
  // bug no_reuseaddr: leaves it off.
  const int on = 1;
  if (bug != Bug::kNoReuseaddr &&
      setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on) != 0) {
    die("setsockopt SO_REUSEADDR", errno);
  }
  const socklen_t len = addr.ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    // bug bind_abort: nobody catches it: std::terminate(), abort() and a core, not exit 1.
    if (bug == Bug::kBindAbort) throw std::system_error(errno, std::generic_category(), "bind");
    const int err = errno;
    die("bind " + describe(addr), err);
  }
  // The backlog holds connections the kernel completed before we accept them: a small one
  // refuses or stalls a burst of connects. The kernel caps it at net.core.somaxconn.
  // bug tiny_backlog: the textbook 3.
  if (listen(fd.get(), bug == Bug::kTinyBacklog ? 3 : SOMAXCONN) != 0) die("listen", errno);
  return fd;
}

}  // namespace

int main(int argc, char** argv) {
  // --bug first, wherever it stands: it decides how the other flags are read.
  std::vector<std::string_view> flags;
  std::string_view bug_name = "none";
  for (int i = 1; i < argc; ++i) {
    const std::string_view arg = argv[i];
    if (arg == "--bug" && i + 1 == argc) return usage_error("--bug needs a value");
    if (arg == "--bug") {
      bug_name = argv[++i];
    } else if (arg.starts_with("--bug=")) {
      bug_name = arg.substr(6);
    } else {
      flags.push_back(arg);
    }
  }
  const auto* mode = std::ranges::find(kBugModes, bug_name, &BugMode::name);
  if (mode == std::end(kBugModes)) {
    return usage_error("--bug: no mode '" + std::string(bug_name) + "'");
  }
  bug = mode->bug;
  if (bug == Bug::kEintrFatal) {
    // A handler for SIGCONT (a server might log "resumed"): poll() then fails with EINTR when
    // the process is continued, as epoll_wait() does even without any handler.
    struct sigaction resumed {};
    resumed.sa_handler = [](int) {};
    sigaction(SIGCONT, &resumed, nullptr);
  }

  std::string host = "127.0.0.1";
  std::uint16_t port = bug == Bug::kWrongDefaultPort ? 8080 : 7000;  // bug wrong_default_port
  sockaddr_storage addr;
  for (std::size_t i = 0; i < flags.size(); ++i) {
    const std::string flag(flags[i]);
    if (flag == "--help") {
      std::cout << usage();
      return bug == Bug::kCliExitCodes ? 1 : 0;  // bug cli_exit_codes: --help "fails"
    }
    if (flag != "--host" && flag != "--port") return usage_error("unknown argument '" + flag + "'");
    if (i + 1 == flags.size()) return usage_error(flag + " needs a value");
    const std::string value(flags[++i]);
    if (flag == "--port" && !parse_port(value, port)) {
      return usage_error("--port: '" + value + "' is not a port number (0 to 65535)");
    }
    if (flag == "--host" && !make_address(value, 0, addr)) {
      return usage_error("--host: bad address '" + value + "' (want numeric IPv4 or IPv6)");
    }
    if (flag == "--host") host = value;
  }

  make_address(host, port, addr);
  Fd listener = listen_on(addr);
  sockaddr_storage bound{};
  socklen_t len = sizeof bound;
  if (getsockname(listener.get(), reinterpret_cast<sockaddr*>(&bound), &len) != 0) {
    die("getsockname", errno);
  }
  // bug ignores_host: the line names the --host address, not the one actually bound.
  if (bug == Bug::kIgnoresHost) {
    port_field(addr) = port_field(bound);
    bound = addr;
  }
  // bug print_requested_port: "--port 0" prints port 0, not the one the kernel chose.
  if (bug == Bug::kPrintRequestedPort) port_field(bound) = htons(port);
  // Flushed at once: scripts and tests wait for this line before they connect.
  std::cout << "listening on " << describe(bound) << "\n";
  // bug stdout_buffered: on a pipe or a file stdout is block-buffered: the line never leaves.
  if (bug != Bug::kStdoutBuffered) std::cout.flush();
  Server(std::move(listener)).run();
}
