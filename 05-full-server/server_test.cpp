#include "server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include <atomic>
#include <chrono>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

namespace {

using std::chrono::milliseconds;

// A worker on its own thread, listening on a free loopback port, as main() runs each loop.
class RunningWorker {
 public:
  explicit RunningWorker(Options options, std::size_t max_connections = 0)
      : options_(std::move(options)), limit_(max_connections) {
    std::vector<Fd> listeners = listen_group("127.0.0.1", 0, 1);
    port_ = port_of(listeners[0].get());
    worker_ = std::make_unique<Worker>(0, std::move(listeners[0]), options_, limit_);
  }
  ~RunningWorker() {
    if (thread_.joinable()) {
      worker_->request(Request::kStopNow);
      thread_.join();
    }
  }

  void start() {
    thread_ = std::thread([this] {
      worker_->run();
      done_ = true;
    });
  }
  // Waits up to `limit` for run() to return.
  bool stops_within(milliseconds limit) {
    const auto until = Clock::now() + limit;
    while (!done_ && Clock::now() < until)
      std::this_thread::sleep_for(milliseconds(5));
    if (!done_) return false;
    thread_.join();
    return true;
  }

  Worker& worker() { return *worker_; }
  ConnectionLimit& limit() { return limit_; }

  // A blocking client socket with a 5 s receive timeout, connected (the kernel completes the
  // handshake even while the worker does not accept).
  Fd connect() const {
    Fd fd(socket(AF_INET, SOCK_STREAM, 0));
    REQUIRE(fd);
    const timeval timeout{5, 0};
    REQUIRE(setsockopt(fd.get(), SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout) == 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
    return fd;
  }

 private:
  static std::uint16_t port_of(int fd) {
    sockaddr_in addr{};
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    return ntohs(addr.sin_port);
  }

  Options options_;
  ConnectionLimit limit_;
  std::uint16_t port_ = 0;
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
  std::atomic<bool> done_{false};
};

Options with_shutdown_timeout(milliseconds timeout) {
  Options options;
  options.shutdown_timeout = timeout;
  return options;
}

// Sends text, and reads back as many bytes (or less, at EOF or the timeout).
std::string echo_of(const Fd& client, const std::string& text) {
  REQUIRE(send(client.get(), text.data(), text.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(text.size()));
  std::string got;
  char buffer[4096];
  while (got.size() < text.size()) {
    const ssize_t n = recv(client.get(), buffer, sizeof buffer, 0);
    if (n <= 0) break;
    got.append(buffer, static_cast<std::size_t>(n));
  }
  return got;
}

// What the server does after our SHUT_WR: 0 for EOF, -1 for an error or the timeout.
ssize_t next_recv(const Fd& client) {
  char byte;
  return recv(client.get(), &byte, 1, 0);
}

}  // namespace

TEST_CASE("the connection limit admits at most max, however many threads ask at once") {
  ConnectionLimit limit(3);
  CHECK(limit.try_acquire());
  CHECK(limit.try_acquire());
  CHECK(limit.try_acquire());
  CHECK_FALSE(limit.try_acquire());
  CHECK(limit.open() == 3);  // the refused one took nothing
  limit.release();
  CHECK(limit.try_acquire());

  ConnectionLimit shared(100);
  std::atomic<int> inside{0}, most{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      for (int i = 0; i < 20000; ++i) {
        if (!shared.try_acquire()) continue;
        const int now = ++inside;
        int seen = most.load();
        while (now > seen && !most.compare_exchange_weak(seen, now)) {
        }
        --inside;
        shared.release();
      }
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  CHECK(most.load() <= 100);
  CHECK(shared.open() == 0);
  CHECK(ConnectionLimit(0).try_acquire());  // 0: no limit
}

TEST_CASE("a drain serves clients already queued, closes the listener, and stops when they end") {
  RunningWorker server(with_shutdown_timeout(milliseconds(20000)));
  // Queued by the kernel before the loop runs, as when SIGTERM comes during a connect burst.
  std::vector<Fd> queued;
  for (int i = 0; i < 5; ++i)
    queued.push_back(server.connect());
  server.worker().request(Request::kDrain);
  server.start();
  for (std::size_t i = 0; i < queued.size(); ++i) {
    CAPTURE(i);
    const std::string text = "queued " + std::to_string(i);
    CHECK(echo_of(queued[i], text) == text);
  }
  CHECK_FALSE(server.stops_within(milliseconds(200)));  // they are still open
  for (Fd& client : queued) {
    shutdown(client.get(), SHUT_WR);
    CHECK(next_recv(client) == 0);  // the server's EOF, after everything was echoed
  }
  CHECK(server.stops_within(milliseconds(5000)));
  const LoopCounters& counters = server.worker().counters();
  CHECK(counters.accepted == 5);
  CHECK(counters.closed_forced == 0);
  CHECK(counters.received == counters.sent);
  CHECK(server.limit().open() == 0);
}

TEST_CASE("at the shutdown timeout, connections still open are closed and the loop stops") {
  RunningWorker server(with_shutdown_timeout(milliseconds(200)));
  server.start();
  Fd lingering = server.connect();
  CHECK(echo_of(lingering, "hello") == "hello");
  const auto asked = Clock::now();
  server.worker().request(Request::kDrain);
  CHECK(echo_of(lingering, "still served") == "still served");
  CHECK(server.stops_within(milliseconds(5000)));
  CHECK(Clock::now() - asked >= milliseconds(200));
  CHECK(next_recv(lingering) == 0);  // closed by the server
  CHECK(server.worker().counters().closed_forced == 1);
  CHECK(server.limit().open() == 0);  // the destroyed coroutine gave its place back
}

TEST_CASE("stop-now ends the loop at once, even after a drain, closing what is open") {
  RunningWorker server(with_shutdown_timeout(milliseconds(60000)));
  server.start();
  Fd open = server.connect();
  CHECK(echo_of(open, "hello") == "hello");
  server.worker().request(Request::kDrain);
  CHECK_FALSE(server.stops_within(milliseconds(100)));
  server.worker().request(Request::kStopNow);
  CHECK(server.stops_within(milliseconds(5000)));
  CHECK(next_recv(open) == 0);
  CHECK(server.worker().counters().closed_forced == 1);
}

TEST_CASE("over the connection limit, a new client is closed at once and counted") {
  RunningWorker server(Options{}, 1);
  server.start();
  Fd admitted = server.connect();
  CHECK(echo_of(admitted, "first") == "first");
  Fd extra = server.connect();
  CHECK(next_recv(extra) == 0);  // closed, with nothing sent
  CHECK(echo_of(admitted, "still here") == "still here");
  server.worker().request(Request::kStopNow);
  CHECK(server.stops_within(milliseconds(5000)));
  CHECK(server.worker().counters().accepted == 1);
  CHECK(server.worker().counters().turned_away == 1);
}

TEST_CASE("an idle connection is closed and counted; the loop goes on") {
  Options options;
  options.idle_timeout = milliseconds(100);
  RunningWorker server(options);
  server.start();
  Fd idle = server.connect();
  CHECK(echo_of(idle, "then silence") == "then silence");
  CHECK(next_recv(idle) == 0);  // within the 5 s receive timeout
  Fd next = server.connect();
  CHECK(echo_of(next, "next") == "next");
  server.worker().request(Request::kStopNow);
  CHECK(server.stops_within(milliseconds(5000)));
  CHECK(server.worker().counters().closed_idle == 1);
}
