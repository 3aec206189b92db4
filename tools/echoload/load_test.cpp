#include "load.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/resource.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include <atomic>
#include <thread>
#include <vector>

#include "socket.hpp"
#include "stream.hpp"

namespace {

// What a test server does wrong, if anything.
enum class Fault {
  kNone,
  kFlipByte,    // inverts the byte at offset `at` of every connection's echo
  kCloseEarly,  // closes every connection once it has received more than `at` bytes
  kGreet,       // sends one byte to every client as soon as it connects
};

// A listening socket on 127.0.0.1, at a port the kernel picks.
Fd listen_on_loopback(bool listening) {
  Fd fd(socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  REQUIRE(fd);
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) == 0);
  if (listening) REQUIRE(listen(fd.get(), SOMAXCONN) == 0);
  return fd;
}

std::uint16_t port_of(const Fd& fd) {
  sockaddr_in address{};
  socklen_t length = sizeof address;
  REQUIRE(getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) == 0);
  return ntohs(address.sin_port);
}

// A tiny echo server on a thread of its own for the length of one test: poll(), and blocking
// sends, which is safe because echoload always reads.
class TestServer {
 public:
  explicit TestServer(Fault fault = Fault::kNone, std::uint64_t at = 0)
      : fault_(fault), at_(at), listener_(listen_on_loopback(true)), port_(port_of(listener_)) {
    thread_ = std::thread([this] { serve(); });
  }
  ~TestServer() {
    stop_ = true;
    thread_.join();
  }
  std::uint16_t port() const { return port_; }

 private:
  struct Peer {
    Fd socket;
    std::uint64_t received = 0;  // bytes from the client so far
  };

  void serve() {
    while (!stop_) {
      std::vector<pollfd> fds{{listener_.get(), POLLIN, 0}};
      for (const Peer& peer : peers_)
        fds.push_back({peer.socket.get(), POLLIN, 0});
      if (poll(fds.data(), fds.size(), 10) <= 0) continue;
      for (std::size_t i = 1; i < fds.size(); ++i) {
        if (fds[i].revents != 0 && !echo_some(peers_[i - 1])) peers_[i - 1].socket.reset();
      }
      std::erase_if(peers_, [](const Peer& peer) { return !peer.socket; });
      if (fds[0].revents != 0) accept_all();
    }
  }

  void accept_all() {
    // Accepted sockets are blocking: accept4() without SOCK_NONBLOCK does not inherit it.
    for (int fd; (fd = accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC)) >= 0;) {
      peers_.push_back({Fd(fd)});
      if (fault_ == Fault::kGreet) (void)send(fd, "x", 1, MSG_NOSIGNAL);
    }
  }

  // One recv() and its echo. False: close this client.
  bool echo_some(Peer& peer) {
    char buffer[16384];
    const ssize_t n = recv(peer.socket.get(), buffer, sizeof buffer, 0);
    if (n <= 0) return false;
    const std::uint64_t first = peer.received;
    peer.received += n;
    if (fault_ == Fault::kCloseEarly && peer.received > at_) return false;
    if (fault_ == Fault::kFlipByte && at_ >= first && at_ < peer.received) {
      buffer[at_ - first] ^= 0xff;
    }
    return send(peer.socket.get(), buffer, n, MSG_NOSIGNAL) == n;
  }

  Fault fault_;
  std::uint64_t at_;
  Fd listener_;
  std::uint16_t port_;
  std::vector<Peer> peers_;  // only the server thread touches these
  std::atomic<bool> stop_{false};
  std::thread thread_;
};

// Runs echoload against a test server with `fault`, for a short while and quietly: long
// enough for thousands of messages on loopback, with no timing checks. The port and the times
// are set here; the rest comes from `options`.
RunResult run_against(Fault fault, std::uint64_t at, Options options) {
  TestServer server(fault, at);
  options.port = server.port();
  options.warmup_s = 0.05;
  options.duration_s = 0.2;
  options.quiet = true;
  return run_load(options);
}

}  // namespace

TEST_CASE("against a correct echo server every byte checks out and the run succeeds") {
  // 100-byte messages do not divide any buffer size, so messages end in the middle of reads.
  const RunResult result =
      run_against(Fault::kNone, 0, {.idle = 3, .connections = 3, .depth = 4, .size = 100});
  CHECK(result.errors.total() == 0);
  CHECK(result.first_error == "");
  CHECK(result.messages > 0);
  CHECK(result.round_trips.count() == result.messages);
  CHECK(result.round_trips.max() > 0);
  CHECK(result.ok());
}

TEST_CASE("messages larger than a socket buffer arrive in pieces and still check out") {
  const RunResult result =
      run_against(Fault::kNone, 0, {.connections = 2, .depth = 2, .size = 300'000});
  CHECK(result.errors.total() == 0);
  CHECK(result.messages > 0);
  CHECK(result.ok());
}

TEST_CASE("one flipped byte is a mismatch at its offset, and the run fails") {
  const RunResult result = run_against(Fault::kFlipByte, 1000, {.depth = 2, .seed = 5});
  CHECK(result.errors.mismatches == 1);
  REQUIRE(result.first_mismatch.has_value());
  const FirstMismatch& mismatch = *result.first_mismatch;
  CHECK(mismatch.connection == 0);
  CHECK_FALSE(mismatch.idle);
  CHECK(mismatch.offset == 1000);
  const Pattern pattern(5);
  const std::uint8_t sent = ByteStream(pattern, 0).at(1000);
  CHECK(mismatch.expected == sent);
  CHECK(mismatch.got == (sent ^ 0xff));
  CHECK_FALSE(result.ok());
}

TEST_CASE("a server that closes connections early is counted once per connection, and fails") {
  const RunResult result = run_against(Fault::kCloseEarly, 500, {.connections = 2});
  CHECK(result.errors.early_closes == 2);
  CHECK(result.errors.mismatches == 0);
  CHECK(result.first_error.starts_with("connection "));
  CHECK_FALSE(result.ok());
}

TEST_CASE("a byte sent on an idle connection, or ahead of the echo, is a mismatch") {
  const RunResult result = run_against(Fault::kGreet, 0, {.idle = 2});
  CHECK(result.errors.mismatches == 3);
  REQUIRE(result.first_mismatch.has_value());
  if (result.first_mismatch->idle) CHECK_FALSE(result.first_mismatch->expected.has_value());
  CHECK_FALSE(result.ok());
}

TEST_CASE("with nothing listening every connect fails, and the run fails at once") {
  const Fd reserved = listen_on_loopback(false);  // holds the port, so nobody else listens there
  // Returns long before the 60 s are up: there is no connection to measure.
  const RunResult result =
      run_load({.port = port_of(reserved), .connections = 2, .duration_s = 60, .quiet = true});
  CHECK(result.errors.connect_failures == 2);
  CHECK(result.first_error.find("Connection refused") != std::string::npos);
  CHECK(result.messages == 0);
  CHECK_FALSE(result.ok());
}

TEST_CASE("too few descriptors for the connections asked: the run refuses to start") {
  rlimit limit{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &limit) == 0);
  if (limit.rlim_max != RLIM_INFINITY && limit.rlim_max > 900'000) {
    MESSAGE("skipped: the hard descriptor limit would allow the million connections");
    return;
  }
  CHECK_THROWS_WITH_AS(run_load({.idle = 1'000'000, .quiet = true}),
                       doctest::Contains("need about 1000017 descriptors, the limit is"),
                       FatalError);
}
