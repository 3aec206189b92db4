#include "loop.hpp"

#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <doctest/doctest.h>

#include <cerrno>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <vector>

namespace {

// One line of /proc/self/fdinfo/<epoll fd>: what the kernel holds in the interest list.
struct Registration {
  int fd = -1;
  std::uint32_t events = 0;
  std::uint64_t data = 0;  // epoll_event.data: for a client, the address of its Client
};

// The interest list as the kernel reports it, one "tfd: 5 events: 19 data: 5581b7a9c2f0 ..."
// line per registered descriptor (events and data in hex).
std::vector<Registration> registrations(int epoll_fd) {
  std::ifstream in("/proc/self/fdinfo/" + std::to_string(epoll_fd));
  REQUIRE(in);
  std::vector<Registration> found;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("tfd:", 0) != 0) continue;
    std::istringstream fields(line);
    std::string key;
    Registration r;
    fields >> key >> r.fd >> key >> std::hex >> r.events >> key >> r.data;
    REQUIRE(fields);
    // epoll_ctl adds these two to every registration: they are reported whether asked for or not.
    r.events &= ~static_cast<std::uint32_t>(EPOLLERR | EPOLLHUP);
    found.push_back(r);
  }
  return found;
}

// The one registration that is not the listener's, if there is one.
std::optional<Registration> client_registration(int epoll_fd, int listener_fd) {
  std::optional<Registration> client;
  for (const Registration& r : registrations(epoll_fd)) {
    if (r.fd == listener_fd) continue;
    REQUIRE_FALSE(client);  // these tests connect one client at a time
    client = r;
  }
  return client;
}

// Runs the loop a round at a time until done() holds, for at most 100 rounds of up to 100 ms.
template <typename Done>
bool run_until(Loop& loop, Done done) {
  for (int round = 0; round < 100 && !done(); ++round) {
    loop.run_once(100);
  }
  return done();
}

// A client socket connected to addr; rcvbuf, when not 0, sets its receive buffer first.
// A blocking recv() on it gives up after 5 s, so that a server that never answers fails the
// test instead of hanging it.
Fd connect_to(const sockaddr_in& addr, int rcvbuf) {
  Fd socket(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  REQUIRE(socket);
  const timeval limit{5, 0};
  REQUIRE(setsockopt(socket.get(), SOL_SOCKET, SO_RCVTIMEO, &limit, sizeof limit) == 0);
  if (rcvbuf != 0) {
    REQUIRE(setsockopt(socket.get(), SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf) == 0);
  }
  REQUIRE(connect(socket.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0);
  return socket;
}

// Bytes waiting in a socket's receive queue.
std::size_t unread(int fd) {
  int bytes = 0;
  REQUIRE(ioctl(fd, FIONREAD, &bytes) == 0);
  return static_cast<std::size_t>(bytes);
}

// The TCP state of a socket (TCP_ESTABLISHED, TCP_CLOSE_WAIT, ...).
int tcp_state(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  REQUIRE(getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) == 0);
  return info.tcpi_state;
}

// A loop listening on a free loopback port, and a connected client whose socket the loop has
// accepted and registered.
struct Fixture {
  explicit Fixture(std::size_t read_buffer_size = kReadBufferSize, int client_rcvbuf = 4096) {
    Fd socket = listen_on("127.0.0.1", 0);
    listener_fd = socket.get();
    socklen_t len = sizeof addr;
    REQUIRE(getsockname(listener_fd, reinterpret_cast<sockaddr*>(&addr), &len) == 0);
    loop.emplace(std::move(socket), read_buffer_size);
    // By default a small receive window, so that a client that stops reading is felt at once.
    client = connect_to(addr, client_rcvbuf);
    REQUIRE(run_until(*loop, [&] { return loop->client_count() == 1; }));
  }

  Registration registered() const {
    const auto r = client_registration(loop->epoll_fd(), listener_fd);
    REQUIRE(r);
    return *r;
  }

  // The client half-closes; returns once its EOF has reached the server's socket r.fd.
  void half_close(const Registration& r) const {
    REQUIRE(shutdown(client.get(), SHUT_WR) == 0);
    for (int round = 0; round < 1000; ++round) {
      if (tcp_state(r.fd) == TCP_CLOSE_WAIT) return;  // the server's side has the FIN
      usleep(1000);
    }
    FAIL("the client's EOF did not reach the server's socket within a second");
  }

  int listener_fd = -1;
  sockaddr_in addr{};
  std::optional<Loop> loop;
  Fd client;
};

// One event as epoll_wait would return it.
epoll_event event_for(std::uint32_t events, std::uint64_t data) {
  epoll_event event{};
  event.events = events;
  event.data.u64 = data;
  return event;
}

// Reads what is available now, without blocking; "" when nothing is.
std::string read_now(const Fd& from) {
  std::string got;
  char chunk[65536];
  for (;;) {
    const ssize_t n = recv(from.get(), chunk, sizeof chunk, MSG_DONTWAIT);
    if (n <= 0) return got;
    got.append(chunk, static_cast<std::size_t>(n));
  }
}

// What every client is registered for, as fdinfo shows it.
constexpr std::uint32_t kRegistered = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

}  // namespace

TEST_CASE("a client is registered once, for everything, edge-triggered") {
  Fixture f;
  const Registration r = f.registered();
  CHECK(r.events == kRegistered);
  CHECK(r.data != 0);  // the listener's tag is null; a client's is its address

  REQUIRE(send(f.client.get(), "ping", 4, 0) == 4);
  std::string echoed;
  CHECK(run_until(*f.loop, [&] {
    echoed += read_now(f.client);
    return echoed.size() >= 4;
  }));
  CHECK(echoed == "ping");
  CHECK(f.registered().events == kRegistered);
}

TEST_CASE("backpressure changes nothing the kernel holds, and every byte still comes back") {
  Fixture f;
  REQUIRE(fcntl(f.client.get(), F_SETFL, O_NONBLOCK) == 0);
  const std::string chunk(16384, 'x');
  std::size_t sent = 0;
  // The client writes and never reads: the server's sends fall short, the bytes it owes pass
  // kMaxOwedBytes and it stops reading, and then the client's sends fail too. Bounded: the
  // kernel buffers on both sides plus the cap are a few MiB.
  int refused = 0;
  for (int round = 0; round < 20000 && refused < 50; ++round) {
    const ssize_t n = send(f.client.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n > 0) {
      sent += static_cast<std::size_t>(n);
      refused = 0;
    } else {
      ++refused;
    }
    f.loop->run_once(0);
    REQUIRE(f.registered().events == kRegistered);  // in stage 2: MOD calls, here none
  }
  REQUIRE(refused == 50);
  CHECK(sent > kMaxOwedBytes);
  CHECK(unread(f.registered().fd) > 0);  // the server stopped reading: bytes wait behind the cap

  // The client reads everything back. It sends nothing more, so no new bytes are reported:
  // the bytes left behind the cap must be read on as the owed bytes drain.
  std::size_t received = 0;
  for (int round = 0; round < 100000 && received < sent; ++round) {
    f.loop->run_once(1);
    received += read_now(f.client).size();
  }
  CHECK(received == sent);
  CHECK(f.registered().events == kRegistered);
}

TEST_CASE("input left after a turn keeps the client on the ready list, served with no new event") {
  constexpr std::size_t kRead = 4096;  // the loop reads 4 KiB at a time here
  constexpr std::size_t kTurn = kReadsPerTurn * kRead;
  Fixture f(kRead, 0);
  const Registration r = f.registered();
  const std::string sent(4 * kTurn, 'y');  // exactly four turns' worth
  REQUIRE(send(f.client.get(), sent.data(), sent.size(), 0) == static_cast<ssize_t>(sent.size()));
  for (int i = 0; i < 1000 && unread(r.fd) < sent.size(); ++i)
    usleep(1000);
  REQUIRE(unread(r.fd) == sent.size());  // all of it waits in the server's socket

  f.loop->run_once(1000);  // the one event these bytes get: a turn, not everything
  CHECK(sent.size() - unread(r.fd) == kTurn);
  CHECK(f.loop->ready_count() == 1);
  // Empty batches: nothing new is reported, so only the ready list can bring the client back.
  for (std::size_t turns = 2; turns <= 4; ++turns) {
    f.loop->dispatch({});
    CHECK(sent.size() - unread(r.fd) == turns * kTurn);
    CHECK(f.loop->ready_count() == 1);  // every read was full: the socket may have more
  }
  f.loop->dispatch({});  // the recv() that says EAGAIN
  CHECK(f.loop->ready_count() == 0);
  CHECK(unread(r.fd) == 0);

  std::string echoed;
  CHECK(run_until(*f.loop, [&] {
    echoed += read_now(f.client);
    return echoed.size() >= sent.size();
  }));
  CHECK(echoed == sent);
}

TEST_CASE("a client whose EOF is reported with its last bytes gets them back and is closed") {
  Fixture f;
  const Registration r = f.registered();
  REQUIRE(send(f.client.get(), "tail", 4, 0) == 4);
  f.half_close(r);
  // One event for both (EPOLLIN | EPOLLRDHUP), and none after it: the turn must read past the
  // short read of "tail" to the EOF, or the client waits for its EOF for ever.
  f.loop->run_once(1000);
  CHECK(f.loop->client_count() == 0);
  CHECK(read_now(f.client) == "tail");
  char byte;
  CHECK(recv(f.client.get(), &byte, 1, 0) == 0);
}

TEST_CASE("a closing client is deregistered, even while a dup keeps its socket open") {
  Fixture f;
  const Registration r = f.registered();
  // Another descriptor for the same socket, as a forked child or a library's dup() would hold.
  // close() alone would then leave the registration in place, reporting events that carry a
  // pointer to a freed Client.
  const Fd copy(dup(r.fd));
  REQUIRE(copy);

  f.half_close(r);  // EOF with nothing owed: close now
  REQUIRE(run_until(*f.loop, [&] { return f.loop->client_count() == 0; }));
  CHECK_FALSE(client_registration(f.loop->epoll_fd(), f.listener_fd));
  // Left registered, the socket would be reported by this wait (the client's close below is
  // a new edge), with a pointer to the freed Client.
  f.client.reset();
  f.loop->run_once(100);
}

TEST_CASE("two events for one client in a batch: one turn, and closed once") {
  Fixture f;
  const Registration r = f.registered();
  f.half_close(r);
  // Events only mark the client ready; its turn comes after the whole batch is read, and it
  // is queued once, so the second event can neither serve nor free it a second time.
  const std::vector<epoll_event> batch{event_for(EPOLLIN | EPOLLRDHUP, r.data),
                                       event_for(EPOLLIN | EPOLLRDHUP, r.data)};
  f.loop->dispatch(batch);
  CHECK(f.loop->client_count() == 0);
  CHECK_FALSE(client_registration(f.loop->epoll_fd(), f.listener_fd));
  char byte;
  CHECK(recv(f.client.get(), &byte, 1, 0) == 0);  // the server closed its side
}

TEST_CASE("a client accepted in a batch can have the descriptor of one closed in it") {
  Fixture f;
  const Registration first = f.registered();
  f.half_close(first);
  // A second client waits in the accept queue, and the batch reports the listener first.
  const Fd second = connect_to(f.addr, 0);
  const std::vector<epoll_event> batch{event_for(EPOLLIN, 0),
                                       event_for(EPOLLIN | EPOLLRDHUP, first.data)};
  f.loop->dispatch(batch);
  REQUIRE(f.loop->client_count() == 1);
  // Accepted after the first client's socket was closed, the second one gets its number (the
  // lowest free). Out of descriptors, that is the difference between serving it and shedding it.
  CHECK(f.registered().fd == first.fd);
}

TEST_CASE("the listener: a round accepts up to its budget, later rounds the rest unasked") {
  Fixture f;
  // More clients than a round accepts, all queued before the one event that announces them.
  const int waiting = kAcceptsPerRound + kAcceptsPerRound / 2;
  std::vector<Fd> clients;
  for (int i = 0; i < waiting; ++i)
    clients.push_back(connect_to(f.addr, 0));
  f.loop->run_once(1000);
  CHECK(f.loop->client_count() == 1 + kAcceptsPerRound);
  f.loop->dispatch({});  // no new edge: the listener's is remembered
  CHECK(f.loop->client_count() == 1 + static_cast<std::size_t>(waiting));
}

TEST_CASE("a listener that stops listening ends the loop with accept's error") {
  Fixture f;
  // shutdown() takes a listener out of the listening state: epoll reports EPOLLHUP for it,
  // unasked (once: edge-triggered), and every accept() fails with EINVAL.
  REQUIRE(shutdown(f.listener_fd, SHUT_RDWR) == 0);
  CHECK_THROWS_WITH_AS(f.loop->run_once(1000), "accept: Invalid argument", FatalError);
}
