#include "reactor.hpp"

#include <fcntl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <algorithm>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <iostream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <vector>

#include "connection.hpp"
#include "server.hpp"

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

TEST_CASE("an event resumes the coroutine waiting on that socket, and no other") {
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

TEST_CASE("an exception that leaves a spawned coroutine is reported, and the reactor goes on") {
  Reactor reactor;
  std::ostringstream captured;
  std::streambuf* const saved = std::cerr.rdbuf(captured.rdbuf());
  reactor.spawn([]() -> Task<void> {
    throw std::runtime_error("something broke");
    co_return;
  }());
  reactor.run_once(0);
  std::cerr.rdbuf(saved);
  CHECK(captured.str() == "error: a spawned coroutine failed: something broke\n");
  CHECK(reactor.spawned_count() == 0);
}

TEST_CASE("a FatalError that leaves a spawned coroutine ends the loop: run() throws it") {
  Reactor reactor;
  std::ostringstream captured;
  std::streambuf* const saved = std::cerr.rdbuf(captured.rdbuf());
  // What accept() throws when the listener cannot go on: no client will ever be accepted again.
  reactor.spawn([]() -> Task<void> {
    throw FatalError("accept: Invalid argument");
    co_return;
  }());
  CHECK_THROWS_WITH_AS(reactor.run(), "accept: Invalid argument", FatalError);
  std::cerr.rdbuf(saved);
  CHECK(captured.str().empty());  // not reported as one coroutine's failure: main() says it
  CHECK(reactor.spawned_count() == 0);
}

#ifndef NDEBUG
TEST_CASE("a second coroutine waiting for the same direction of a socket is caught at once") {
  const auto wait_to_read = [](Watch& watch) -> Task<void> { co_await WaitFor{watch.reader}; };
  // One waiter is fine: the child process goes on and exits normally.
  CHECK(how_it_ends([&] {
          Watch watch;  // first, so that it outlives the frames that wait in it
          Reactor reactor;
          reactor.spawn(wait_to_read(watch));
          reactor.run_once(0);
        }) == "exit 0");
  // A second would silently take the first one's place, and the first would wait for ever.
  CHECK(how_it_ends([&] {
          Watch watch;  // first, so that it outlives the frames that wait in it
          Reactor reactor;
          reactor.spawn(wait_to_read(watch));
          reactor.spawn(wait_to_read(watch));
          reactor.run_once(0);
        }) == "SIGABRT");
}
#endif

TEST_CASE("write_all keeps its own copy of what it still has to send while it waits") {
  Reactor reactor;
  auto [server, client] = make_pair();
  const std::size_t size = 4 << 20;  // far more than a socket pair buffers
  std::string sent(size, '\0');
  for (std::size_t i = 0; i < size; ++i)
    sent[i] = static_cast<char>(i * 7 % 251);
  bool done = false;
  // The bytes to send sit in the reactor's read buffer, as an echo's do.
  reactor.spawn([](Reactor& r, Fd socket, const std::string& bytes, bool& finished) -> Task<void> {
    Connection connection(r, std::move(socket));
    const std::span<char> buffer = r.read_buffer();
    for (std::size_t at = 0; at < bytes.size(); at += buffer.size()) {
      const std::size_t n = std::min(buffer.size(), bytes.size() - at);
      std::copy_n(bytes.data() + at, n, buffer.data());
      co_await connection.write_all(buffer.first(n));
    }
    finished = true;
  }(reactor, std::move(server), sent, done));
  std::string received;
  for (int round = 0; round < 100000 && !done; ++round) {
    reactor.run_once(0);
    // Another connection's read would overwrite the shared buffer while write_all waits.
    std::fill(reactor.read_buffer().begin(), reactor.read_buffer().end(), 'X');
    received += read_available(client);
  }
  received += read_available(client);
  CHECK(done);
  CHECK(received.size() == sent.size());
  CHECK(received == sent);
}

TEST_CASE("a connection that always has more to read yields after kReadsPerTurn reads") {
  constexpr std::size_t kRead = 4096;  // the reactor reads 4 KiB at a time here
  Reactor reactor(kRead);
  auto [server, client] = make_pair();
  const std::string sent(10 * kRead, 'f');  // ten reads' worth, all there before the first
  REQUIRE(send(client.get(), sent.data(), sent.size(), 0) == static_cast<ssize_t>(sent.size()));
  reactor.spawn(echo(reactor, std::move(server)));
  reactor.run_once(0);  // starts, registers, and waits: the event comes with the next look
  std::string received;
  // Each round, one turn: kReadsPerTurn reads (each echoed), then a yield to the back of the
  // queue. Without the yield, the first turn would take all ten, and a flood all it sends.
  for (const std::size_t expected : {4 * kRead, 8 * kRead, 10 * kRead}) {
    reactor.run_once(0);
    received += read_available(client);
    CHECK(received.size() == expected);
  }
  CHECK(received == sent);
}
