#include "reactor.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <filesystem>
#include <iostream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "connection.hpp"

namespace {

// A connected pair of non-blocking stream sockets: `server` goes to a Connection, `client`
// plays the remote peer.
struct SocketPair {
  Fd server;
  Fd client;
};

SocketPair make_pair() {
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  return {Fd(fds[0]), Fd(fds[1])};
}

std::string read_available(const Fd& from) {
  std::string got;
  char chunk[65536];
  for (;;) {
    const ssize_t n = recv(from.get(), chunk, sizeof chunk, 0);
    if (n <= 0) return got;
    got.append(chunk, static_cast<std::size_t>(n));
  }
}

// Runs rounds that do not sleep until done() holds, at most `rounds` of them.
template <typename Done>
bool run_until(Reactor& reactor, Done done, int rounds = 1000) {
  for (int i = 0; i < rounds && !done(); ++i)
    reactor.run_once(10);
  return done();
}

// Reads once and records what came.
Task<void> read_once(Reactor& reactor, Fd socket, std::string& got, bool& done) {
  Connection connection(reactor, std::move(socket));
  const std::span<const char> bytes = co_await connection.read_some();
  got.assign(bytes.begin(), bytes.end());
  done = true;
}

// The echo loop of Worker::serve, without the server around it.
Task<void> echo(Reactor& reactor, Fd socket) {
  Connection client(reactor, std::move(socket));
  for (;;) {
    const std::span<const char> bytes = co_await client.read_some();
    if (bytes.empty()) break;
    co_await client.write_all(bytes);
  }
}

struct Witness {
  explicit Witness(int& destroyed) : destroyed_(destroyed) {}
  ~Witness() { ++destroyed_; }
  int& destroyed_;
};

Task<void> wait_for_ever(Reactor& reactor, Fd socket, int& destroyed) {
  Witness witness(destroyed);
  Connection connection(reactor, std::move(socket));
  co_await connection.read_some();  // nobody writes
  FAIL("read_some returned although nothing was sent");
}

// Runs body in a child process, and says how the child ended: "exit 0", "exit 1" (body threw,
// or a sanitizer stopped it), or the signal that ended it, "SIGABRT" for a failed assertion.
// The test binary itself goes on, so a test case can show that a broken rule is caught.
template <typename Body>
std::string how_it_ends(Body body) {
  std::cout.flush();  // nothing buffered before the fork is written twice
  const pid_t child = fork();
  REQUIRE(child >= 0);
  if (child == 0) {
    std::signal(SIGABRT, SIG_DFL);  // doctest's handler would report a crash of the child
    const int null = open("/dev/null", O_WRONLY | O_CLOEXEC);
    dup2(null, STDERR_FILENO);  // the assertion's message is expected: keep the output clean
    try {
      body();
    } catch (...) {
      _exit(1);
    }
    _exit(0);  // not exit(): nothing of the parent's (doctest's report) runs twice
  }
  int status = 0;
  REQUIRE(waitpid(child, &status, 0) == child);
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  return std::string("SIG") + sigabbrev_np(WTERMSIG(status));
}

}  // namespace

TEST_CASE("a completion resumes the coroutine waiting on that socket, and no other") {
  Reactor reactor;
  auto [first_server, first_client] = make_pair();
  auto [second_server, second_client] = make_pair();
  std::string first_got, second_got;
  bool first_done = false, second_done = false;
  reactor.spawn(read_once(reactor, std::move(first_server), first_got, first_done));
  reactor.spawn(read_once(reactor, std::move(second_server), second_got, second_done));
  reactor.run_once(0);  // both start, and wait
  CHECK(reactor.spawned_count() == 2);

  REQUIRE(send(second_client.get(), "to the second", 13, 0) == 13);
  CHECK(run_until(reactor, [&] { return second_done; }));
  CHECK(second_got == "to the second");
  CHECK_FALSE(first_done);
  CHECK(reactor.spawned_count() == 1);  // the finished one is freed at once
}

TEST_CASE("the reactor owns what it spawns: unfinished frames are destroyed with it") {
  int destroyed = 0;
  auto [server, client] = make_pair();
  {
    Reactor reactor;
    reactor.spawn(wait_for_ever(reactor, std::move(server), destroyed));
    reactor.run_once(0);
    CHECK(reactor.spawned_count() == 1);
    CHECK(destroyed == 0);
  }  // shut down with the coroutine waiting: its frame (and its socket) must go
  CHECK(destroyed == 1);
  char byte;
  CHECK(recv(client.get(), &byte, 1, 0) == 0);  // the server's side was closed: EOF
}

// What log() writes while it lives: log() writes to descriptor 2 itself, so descriptor 2 is
// a pipe until text() puts the real stderr back.
class CapturedStderr {
 public:
  CapturedStderr() {
    int pipe_fds[2];
    REQUIRE(pipe2(pipe_fds, O_NONBLOCK | O_CLOEXEC) == 0);
    read_end_.reset(pipe_fds[0]);
    const Fd write_end(pipe_fds[1]);
    REQUIRE(dup2(write_end.get(), STDERR_FILENO) == STDERR_FILENO);
  }
  ~CapturedStderr() { dup2(saved_.get(), STDERR_FILENO); }
  CapturedStderr(const CapturedStderr&) = delete;
  CapturedStderr& operator=(const CapturedStderr&) = delete;

  std::string text() {
    dup2(saved_.get(), STDERR_FILENO);  // the pipe's last writer gone: what it holds is all
    char chunk[256];
    const ssize_t n = read(read_end_.get(), chunk, sizeof chunk);
    return std::string(chunk, n > 0 ? static_cast<std::size_t>(n) : 0);
  }

 private:
  const Fd saved_{dup(STDERR_FILENO)};
  Fd read_end_;
};

TEST_CASE("an exception that leaves a spawned coroutine is reported, and the reactor goes on") {
  Reactor reactor;
  CapturedStderr stderr_text;
  reactor.spawn([]() -> Task<void> {
    throw std::runtime_error("something broke");
    co_return;
  }());
  reactor.run_once(0);
  CHECK(stderr_text.text() == "error: a spawned coroutine failed: something broke\n");
  CHECK(reactor.spawned_count() == 0);
}

TEST_CASE("a FatalError that leaves a spawned coroutine ends the loop: run() throws it") {
  Reactor reactor;
  CapturedStderr stderr_text;
  // What accept() throws when the listener cannot go on: no client will ever be accepted again.
  reactor.spawn([]() -> Task<void> {
    throw FatalError("accept: Invalid argument");
    co_return;
  }());
  CHECK_THROWS_WITH_AS(reactor.run(), "accept: Invalid argument", FatalError);
  CHECK(stderr_text.text().empty());  // not reported as one coroutine's failure
  CHECK(reactor.spawned_count() == 0);
}

#ifndef NDEBUG
TEST_CASE("a second coroutine waiting in the same slot is caught at once") {
  const auto wait_to_read = [](Reactor& reactor, std::coroutine_handle<>& slot) -> Task<void> {
    co_await reactor.wait(slot, kNever);
  };
  // One waiter is fine: the child process goes on and exits normally.
  CHECK(how_it_ends([&] {
          std::coroutine_handle<> slot;  // first, so that it outlives the frames that wait in it
          Reactor reactor;
          reactor.spawn(wait_to_read(reactor, slot));
          reactor.run_once(0);
        }) == "exit 0");
  // A second would silently take the first one's place, and the first would wait for ever.
  CHECK(how_it_ends([&] {
          std::coroutine_handle<> slot;  // first, so that it outlives the frames that wait in it
          Reactor reactor;
          reactor.spawn(wait_to_read(reactor, slot));
          reactor.spawn(wait_to_read(reactor, slot));
          reactor.run_once(0);
        }) == "SIGABRT");
}
#endif

TEST_CASE("write_all keeps its own copy of bytes that are not in the connection's buffer") {
  Reactor reactor;
  auto [server, client] = make_pair();
  const std::size_t size = 4 << 20;  // far more than a socket pair buffers
  std::string sent(size, '\0');
  for (std::size_t i = 0; i < size; ++i)
    sent[i] = static_cast<char>(i * 7 % 251);
  std::string scratch = sent;  // the caller's bytes: overwritten while the sends are in flight
  bool done = false;
  reactor.spawn([](Reactor& r, Fd socket, const std::string& bytes, bool& finished) -> Task<void> {
    Connection connection(r, std::move(socket));
    co_await connection.write_all(bytes);
    finished = true;
  }(reactor, std::move(server), scratch, done));
  std::string received;
  for (int round = 0; round < 100000 && !done; ++round) {
    reactor.run_once(0);
    std::fill(scratch.begin(), scratch.end(), 'X');  // the kernel must be reading a copy
    received += read_available(client);
  }
  received += read_available(client);
  CHECK(done);
  CHECK(received.size() == sent.size());
  CHECK(received == sent);
}

// Reads nothing until `go`, then echoes until EOF; says where its connection is.
Task<void> echo_when(Reactor& reactor, Fd socket, const bool& go, Connection*& where) {
  Connection connection(reactor, std::move(socket));
  where = &connection;
  while (!go)
    co_await reactor.sleep_for(std::chrono::milliseconds(1));
  for (;;) {
    const std::span<const char> bytes = co_await connection.read_some();
    if (bytes.empty()) break;
    co_await connection.write_all(bytes);
  }
  where = nullptr;
}

TEST_CASE("a connection that is not read from holds at most kMaxBuffersHeld receive buffers") {
  constexpr std::size_t kBuffer = 4096;
  Reactor reactor(kBuffer, 64);
  auto [server, client] = make_pair();
  bool go = false;
  Connection* connection = nullptr;
  reactor.spawn(echo_when(reactor, std::move(server), go, connection));
  const std::string sent(40 * kBuffer, 'b');  // ten times the cap, ready before the first read
  REQUIRE(send(client.get(), sent.data(), sent.size(), 0) == static_cast<ssize_t>(sent.size()));
  for (int round = 0; round < 50; ++round)
    reactor.run_once(1);
  REQUIRE(connection != nullptr);
  // At the cap: what the kernel received into more buffers in the same go was copied out and
  // those buffers given back, and the rest waits in the socket. The ring keeps the other 60.
  CHECK(connection->buffers_held() == kMaxBuffersHeld);
  CHECK(reactor.buffers().lent() == kMaxBuffersHeld);
  // Once it reads, the receive is asked again each time everything held has been read: all of
  // it comes through, in order.
  go = true;
  std::string received;
  for (int round = 0; round < 20000 && received.size() < sent.size(); ++round) {
    reactor.run_once(0);
    received += read_available(client);
  }
  CHECK(received == sent);
}

TEST_CASE("the buffer ring runs dry, and a receive that found it empty goes on once one is back") {
  constexpr std::size_t kBuffer = 4096;
  Reactor reactor(kBuffer, 8);  // two connections at the cap hold them all
  auto [first_server, first_client] = make_pair();
  auto [second_server, second_client] = make_pair();
  auto [third_server, third_client] = make_pair();
  bool first_go = false, second_go = false, third_go = true;
  Connection *first = nullptr, *second = nullptr, *third = nullptr;
  reactor.spawn(echo_when(reactor, std::move(first_server), first_go, first));
  reactor.spawn(echo_when(reactor, std::move(second_server), second_go, second));
  const std::string flood(12 * kBuffer, 'f');
  REQUIRE(send(first_client.get(), flood.data(), flood.size(), 0) == 12 * 4096);
  REQUIRE(send(second_client.get(), flood.data(), flood.size(), 0) == 12 * 4096);
  for (int round = 0; round < 50; ++round)
    reactor.run_once(1);
  CHECK(reactor.buffers().lent() == 8);  // dry
  reactor.spawn(echo_when(reactor, std::move(third_server), third_go, third));
  REQUIRE(send(third_client.get(), "hello", 5, 0) == 5);
  for (int round = 0; round < 50; ++round)
    reactor.run_once(1);
  CHECK(read_available(third_client).empty());  // ENOBUFS: nothing to receive into
  first_go = true;  // reads, so its buffers come back: the third asks again, and is served
  std::string echoed;
  for (int round = 0; round < 20000 && echoed.size() < 5; ++round) {
    reactor.run_once(0);
    echoed += read_available(third_client);
    read_available(first_client);
  }
  CHECK(echoed == "hello");
  second_go = true;
  std::string rest;
  for (int round = 0; round < 20000 && rest.size() < flood.size(); ++round) {
    reactor.run_once(0);
    rest += read_available(second_client);
  }
  CHECK(rest == flood);
}

TEST_CASE("sleep_for resumes the coroutine once its delay has passed, not before") {
  Reactor reactor;
  bool woke = false;
  const auto start = Clock::now();
  reactor.spawn([](Reactor& r, bool& done) -> Task<void> {
    co_await r.sleep_for(std::chrono::milliseconds(50));
    done = true;
  }(reactor, woke));
  reactor.run_once(0);
  CHECK(reactor.timer_count() == 1);
  while (!woke && Clock::now() - start < std::chrono::seconds(5))
    reactor.run_once(-1);  // sleeps in io_uring_enter until the timer is due
  CHECK(woke);
  CHECK(Clock::now() - start >= std::chrono::milliseconds(50));
  CHECK(reactor.timer_count() == 0);
}

TEST_CASE("destroying a sleeping coroutine cancels its timer") {
  Reactor reactor;
  reactor.spawn([](Reactor& r) -> Task<void> {
    co_await r.sleep_for(std::chrono::hours(1));
    FAIL("woke up an hour early");
  }(reactor));
  reactor.run_once(0);
  CHECK(reactor.timer_count() == 1);
  reactor.destroy_all();
  CHECK(reactor.spawned_count() == 0);
  CHECK(reactor.timer_count() == 0);  // no timer left pointing into a freed frame
}

TEST_CASE("a read that waits longer than the idle timeout ends with IdleTimeout") {
  Reactor reactor;
  auto [server, client] = make_pair();
  std::string outcome;
  reactor.spawn([](Reactor& r, Fd socket, std::string& result) -> Task<void> {
    Connection connection(r, std::move(socket), std::chrono::milliseconds(50));
    try {
      co_await connection.read_some();
      result = "read";
    } catch (const IdleTimeout& e) {
      result = e.what();
    }
  }(reactor, std::move(server), outcome));
  const auto start = Clock::now();
  CHECK(run_until(reactor, [&] { return !outcome.empty(); }));
  CHECK(outcome == "idle for 50 ms");
  CHECK(Clock::now() - start >= std::chrono::milliseconds(50));
  CHECK(reactor.timer_count() == 0);
}

TEST_CASE("bytes that keep moving keep the idle timeout away") {
  using std::chrono::milliseconds;
  constexpr milliseconds kIdleTimeout{1000};
  Reactor reactor;
  auto [server, client] = make_pair();
  std::string outcome;
  reactor.spawn([](Reactor& r, Fd socket, milliseconds timeout, std::string& result) -> Task<void> {
    Connection connection(r, std::move(socket), timeout);
    try {
      for (;;) {
        const std::span<const char> bytes = co_await connection.read_some();
        if (bytes.empty()) break;
        co_await connection.write_all(bytes);
      }
      result = "EOF";
    } catch (const IdleTimeout& e) {
      result = e.what();
    }
  }(reactor, std::move(server), kIdleTimeout, outcome));
  reactor.run_once(0);  // starts, and waits for the first byte
  // Driven by events, so that a slow machine cannot fail it: the loop runs only once a byte
  // has been sent (an event and a deadline in the same round: the event wins), and then for
  // at most a twentieth of the timeout while nothing is pending. Only a stall of most of a
  // second inside that short window could close the connection. For half as long again as the
  // timeout in all, so that a deadline which bytes do not move passes while the loop runs.
  const auto start = Clock::now();
  while (Clock::now() - start < kIdleTimeout * 3 / 2 && outcome.empty()) {
    const auto sent = Clock::now();
    // MSG_NOSIGNAL: if the server closed, a failed check rather than a silent SIGPIPE death.
    REQUIRE(send(client.get(), "x", 1, MSG_NOSIGNAL) == 1);
    std::string echoed;
    while (echoed.empty() && outcome.empty() && Clock::now() - sent < std::chrono::seconds(5)) {
      reactor.run_once(1);
      echoed = read_available(client);
    }
    CHECK(echoed == "x");
    while (Clock::now() - sent < kIdleTimeout / 20 && outcome.empty())
      reactor.run_once(1);  // idle, well within the timeout, so its deadline has its chance
  }
  CHECK(outcome.empty());
  CHECK(reactor.timer_count() == 1);  // the one pending read's deadline, and no other
  shutdown(client.get(), SHUT_WR);
  CHECK(run_until(reactor, [&] { return !outcome.empty(); }));
  CHECK(outcome == "EOF");
  CHECK(reactor.timer_count() == 0);
}

TEST_CASE("a Wakeup notified from another thread resumes the coroutine waiting on it") {
  Reactor reactor;
  Wakeup wakeup(reactor);
  int woken = 0;
  reactor.spawn([](Wakeup& w, int& count) -> Task<void> {
    for (;;) {
      co_await w.wait();
      ++count;
    }
  }(wakeup, woken));
  reactor.run_once(0);
  CHECK(woken == 0);
  std::thread other([&] { wakeup.notify(); });
  reactor.run_once(5000);  // sleeps until the notification
  other.join();
  CHECK(woken == 1);
  wakeup.notify();
  wakeup.notify();  // two before the loop looks: merged into one wake-up
  reactor.run_once(5000);
  CHECK(woken == 2);
  reactor.run_once(0);
  CHECK(woken == 2);
  reactor.destroy_all();
}

TEST_CASE("a stopped listener hands out the clients already queued, then ends") {
  Reactor reactor;
  std::vector<Fd> group = listen_group("127.0.0.1", 0, 1);
  sockaddr_in address{};
  socklen_t length = sizeof address;
  REQUIRE(getsockname(group[0].get(), reinterpret_cast<sockaddr*>(&address), &length) == 0);
  Listener listener(reactor, std::move(group[0]));
  std::vector<Fd> clients;  // queued by the kernel: nobody has called accept yet
  for (int i = 0; i < 5; ++i) {
    clients.emplace_back(socket(AF_INET, SOCK_STREAM, 0));
    REQUIRE(connect(clients.back().get(), reinterpret_cast<const sockaddr*>(&address),
                    sizeof address) == 0);
  }
  int accepted = -1;
  listener.stop();  // before the first accept: what is queued must still come out
  reactor.spawn([](Listener& l, int& count) -> Task<void> {
    count = 0;
    while (co_await l.accept())
      ++count;
  }(listener, accepted));
  CHECK(run_until(reactor, [&] { return reactor.spawned_count() == 0; }));
  CHECK(accepted == 5);
}

// What the kernel holds of this process: its open descriptors.
std::size_t open_descriptors() {
  std::size_t count = 0;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    (void)entry;
    ++count;
  }
  return count;
}

TEST_CASE("NO_IO_URING makes the ring unavailable, with one line that says what to do") {
  REQUIRE(setenv("NO_IO_URING", "1", 1) == 0);
  std::string message;
  try {
    Reactor reactor;
  } catch (const IoUringUnavailable& e) {
    message = e.what();
  }
  REQUIRE(unsetenv("NO_IO_URING") == 0);
  CHECK(message.starts_with("io_uring unavailable: NO_IO_URING is set"));
  CHECK(message.find("make run STAGE=5") != std::string::npos);
  CHECK(message.find('\n') == std::string::npos);
}

TEST_CASE("a reactor set up, run and torn down leaves no descriptor and no request behind") {
  const std::size_t before = open_descriptors();
  {
    Reactor reactor;
    CHECK(open_descriptors() == before + 1);  // the ring
    auto [server, client] = make_pair();
    reactor.spawn(echo(reactor, std::move(server)));
    REQUIRE(send(client.get(), "ping", 4, 0) == 4);
    std::string echoed;
    for (int round = 0; round < 1000 && echoed.size() < 4; ++round) {
      reactor.run_once(1);
      echoed += read_available(client);
    }
    CHECK(echoed == "ping");
    CHECK(reactor.in_flight() == 1);  // the multishot receive, waiting for more
  }  // the coroutine destroyed where it waits, its receive cancelled and waited for
  CHECK(open_descriptors() == before);
}

TEST_CASE("a read that is given up is cancelled in the ring, and its buffers all come back") {
  Reactor reactor(4096, 16);
  auto [server, client] = make_pair();
  int destroyed = 0;
  reactor.spawn(wait_for_ever(reactor, std::move(server), destroyed));
  reactor.run_once(0);
  CHECK(reactor.in_flight() == 1);
  reactor.destroy_all();  // abandons the receive: cancelled, but in flight until it ends
  CHECK(destroyed == 1);
  CHECK(reactor.in_flight() == 1);
  reactor.quiesce();
  CHECK(reactor.in_flight() == 0);
  CHECK(reactor.buffers().lent() == 0);
  CHECK(reactor.stale_completions() == 0);
}

TEST_CASE("a frame destroyed with a send in flight: the bytes live until the send has ended") {
  Reactor reactor;
  auto [server, client] = make_pair();
  const std::size_t size = 8 << 20;  // far more than a socket pair buffers: the send waits
  std::string sent(size, '\0');
  for (std::size_t i = 0; i < size; ++i)
    sent[i] = static_cast<char>(i * 13 % 241);
  reactor.spawn([](Reactor& r, Fd socket, std::string bytes) -> Task<void> {
    Connection connection(r, std::move(socket));
    co_await connection.write_all(bytes);
    FAIL("8 MiB went into a socket pair that nobody reads");
  }(reactor, std::move(server), sent));
  std::string received;
  for (int round = 0; round < 20; ++round) {
    reactor.run_once(1);
    received += read_available(client);
  }
  REQUIRE(reactor.in_flight() == 2);  // the receive, and the send waiting for room
  reactor.destroy_all();              // the frame, the string and the Connection go; the copy stays
  CHECK(reactor.in_flight() == 2);
  reactor.quiesce();
  CHECK(reactor.in_flight() == 0);
  CHECK(reactor.stale_completions() == 0);
  received += read_available(client);
  // Whatever arrived is the start of what was sent: nothing was read from freed memory.
  CHECK(received.size() < sent.size());
  CHECK(received == sent.substr(0, received.size()));
}

// A no-op request that counts its completions.
struct CountedNop final : Operation {
  int completions = 0;
  void on_completion(int, std::uint32_t) override { ++completions; }
};

TEST_CASE("a completion that names a slot used again since is caught by its generation") {
  Reactor reactor;
  CountedNop first, second;
  io_uring_prep_nop(reactor.prepare(first));
  const std::uint64_t first_token = first.token();
  reactor.run_once(0);
  REQUIRE(first.completions == 1);
  io_uring_prep_nop(reactor.prepare(second));  // takes the slot first had, a generation on
  CHECK((second.token() >> 32) == (first_token >> 32));
  CHECK(second.token() != first_token);
  reactor.post_for_test(first_token);  // what a completion of first's would carry, too late
  reactor.run_once(0);
  reactor.run_once(0);
  CHECK(second.completions == 1);  // its own, and not first's
  CHECK(first.completions == 1);
  CHECK(reactor.stale_completions() == 1);
}
