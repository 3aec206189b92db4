#include "server.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <exception>
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
    listener_fd_ = listeners[0].get();
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
      try {
        worker_->run();
      } catch (const std::exception& e) {
        failure_ = e.what();
      }
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
  // What run() threw, once it has returned (stops_within).
  const std::string& failure() const { return failure_; }
  // The worker's listening socket, borrowed: valid until the worker closes it.
  int listener_fd() const { return listener_fd_; }

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
  int listener_fd_ = -1;
  std::unique_ptr<Worker> worker_;
  std::thread thread_;
  std::atomic<bool> done_{false};
  std::string failure_;  // written by the worker's thread before done_, read after the join
};

Options with_shutdown_timeout(milliseconds timeout) {
  Options options;
  options.shutdown_timeout = timeout;
  return options;
}

// recv, again after EINTR. When a ring goes away, the kernel tells the thread that set it up
// (this one, as main() does) with a task-work notification that interrupts a blocking call in
// that thread: a recv with a timeout then fails with EINTR, with no signal in sight.
ssize_t recv_retrying(const Fd& client, char* buffer, std::size_t size) {
  ssize_t n;
  do {
    n = recv(client.get(), buffer, size, 0);
  } while (n < 0 && errno == EINTR);
  return n;
}

// Sends text, and reads back as many bytes (or less, at EOF or the timeout).
std::string echo_of(const Fd& client, const std::string& text) {
  REQUIRE(send(client.get(), text.data(), text.size(), MSG_NOSIGNAL) ==
          static_cast<ssize_t>(text.size()));
  std::string got;
  char buffer[4096];
  while (got.size() < text.size()) {
    const ssize_t n = recv_retrying(client, buffer, sizeof buffer);
    if (n <= 0) break;
    got.append(buffer, static_cast<std::size_t>(n));
  }
  return got;
}

// What the server does after our SHUT_WR: 0 for EOF, -1 for an error or the timeout.
ssize_t next_recv(const Fd& client) {
  char byte;
  return recv_retrying(client, &byte, 1);
}

}  // namespace

TEST_CASE("a client's own failures close it quietly; memory pressure and bugs are told apart") {
  for (const int gone :
       {ECONNRESET, EPIPE, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ENETDOWN, EHOSTDOWN}) {
    CAPTURE(gone);
    CHECK(classify_client_error(gone) == ClientError::kGone);
  }
  for (const int short_of_memory : {ENOMEM, ENOBUFS}) {
    CAPTURE(short_of_memory);
    CHECK(classify_client_error(short_of_memory) == ClientError::kOutOfMemory);
  }
  // What no client can cause: our own misuse of a descriptor.
  for (const int bug : {EBADF, EINVAL, EFAULT, ENOTSOCK, ENOTCONN}) {
    CAPTURE(bug);
    CHECK(classify_client_error(bug) == ClientError::kUnexpected);
  }
}

TEST_CASE("the connection limit admits at most max, however many threads ask at once") {
  ConnectionLimit limit(3);
  CHECK(limit.try_acquire());
  CHECK(limit.try_acquire());
  CHECK(limit.try_acquire());
  CHECK_FALSE(limit.try_acquire());
  CHECK(limit.open() == 3);  // the refused one took nothing
  limit.release();
  CHECK(limit.try_acquire());
  CHECK(ConnectionLimit(0).try_acquire());  // 0: no limit

  // Four threads, as four loops would, take places from one limit and give them back, as fast
  // as they can for 300 ms: each wants half the limit, so together they keep pressing on it.
  // No more than max may ever be held, and when all is given back the count must be 0. A
  // count read and then written back (not atomic) loses updates, and drifts; a count kept per
  // thread (per loop) lets each hold its half, twice the limit in all.
  constexpr std::size_t kMax = 64;
  constexpr std::size_t kWantedEach = kMax / 2;
  ConnectionLimit shared(kMax);
  std::atomic<std::size_t> held{0}, most{0};
  const auto until = Clock::now() + milliseconds(300);
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&] {
      std::size_t mine = 0;
      const auto give_one_back = [&] {
        --held;  // before the release: `held` never counts a place that is free again
        --mine;
        shared.release();
      };
      while (Clock::now() < until) {
        // Many turns to a look at the clock: the less else a thread does, the more often two
        // of them are inside the limit at once, even when they share one core.
        for (int turn = 0; turn < 1000; ++turn) {
          if (mine < kWantedEach && shared.try_acquire()) {
            ++mine;
            const std::size_t now = ++held;
            std::size_t seen = most.load();
            while (now > seen && !most.compare_exchange_weak(seen, now)) {
            }
          } else if (mine > 0) {
            give_one_back();
          }
        }
      }
      while (mine > 0)
        give_one_back();
    });
  }
  for (std::thread& thread : threads)
    thread.join();
  CHECK(most.load() <= kMax);
  CHECK(most.load() > kWantedEach);  // the threads did press on the limit together
  CHECK(shared.open() == 0);
}

TEST_CASE("a drain serves clients already queued, closes the listener, and stops when they end") {
  RunningWorker server(with_shutdown_timeout(milliseconds(20000)));
  // Queued by the kernel before the loop runs, as when SIGTERM comes during a connect burst.
  // More than one round accepts: the first round takes kAcceptsPerRound, then follow_requests
  // reads the drain with the rest still queued. (With fewer, every client would be accepted
  // before the drain is even seen, and a drain that dropped the queue would go unnoticed.)
  const int count = 2 * kAcceptsPerRound;
  std::vector<Fd> queued;
  for (int i = 0; i < count; ++i)
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
  CHECK(counters.accepted == static_cast<std::uint64_t>(count));
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

TEST_CASE("a drain asked after stop-now does not undo it: the loop stops at once") {
  RunningWorker server(with_shutdown_timeout(milliseconds(60000)));
  Fd open = server.connect();  // admitted in the first round, and open when the loop stops
  // Both before the loop reads either, as when a loop fails just after a second signal and
  // supervise() asks every loop to drain.
  server.worker().request(Request::kStopNow);
  server.worker().request(Request::kDrain);
  server.start();
  CHECK(server.stops_within(milliseconds(5000)));  // not after the 60 s a drain may take
  CHECK(next_recv(open) == 0);
  CHECK(server.worker().counters().closed_forced == 1);
}

TEST_CASE("a loop that stops before a connection's coroutine has started gives its place back") {
  RunningWorker server(with_shutdown_timeout(milliseconds(60000)), 10);
  Fd client = server.connect();  // queued: the first round accepts it and spawns its echo,
  server.worker().request(Request::kStopNow);  // then reads this and stops, in that round
  server.start();
  CHECK(server.stops_within(milliseconds(5000)));
  CHECK(server.worker().counters().accepted == 1);       // admitted,
  CHECK(server.worker().counters().closed_forced == 1);  // and destroyed before it ran
  CHECK(server.limit().open() == 0);
  CHECK(next_recv(client) == 0);
}

TEST_CASE("a loop that fails destroys what it runs before run() throws") {
  RunningWorker server(with_shutdown_timeout(milliseconds(60000)), 10);
  server.start();
  Fd open = server.connect();
  CHECK(echo_of(open, "hello") == "hello");
  // The listener is shut down under the loop: accept() fails with EINVAL, a FatalError, which
  // ends the loop while coroutines still wait in the slots of its listener and wakeup.
  REQUIRE(shutdown(server.listener_fd(), SHUT_RDWR) == 0);
  CHECK(server.stops_within(milliseconds(5000)));
  CHECK(server.failure() == "accept: Invalid argument");
  // Destroyed in run(), while the worker is whole: the client is closed and its place given
  // back. Left to ~Reactor, the frames would be destroyed after listener_ and wakeup_, and
  // their waits would write into those (ASan cannot see that write: the memory is the
  // worker's, and still allocated); and their requests would still be in flight.
  CHECK(server.limit().open() == 0);
  CHECK(next_recv(open) == 0);
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
