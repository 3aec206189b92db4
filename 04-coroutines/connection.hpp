#pragma once
// Connection and Listener: sockets whose operations are awaited.

#include <cassert>
#include <cstddef>
#include <span>

#include "reactor.hpp"
#include "socket.hpp"
#include "task.hpp"

// The budgets, as in stage 3: a connection reads at most kReadsPerTurn times, and the
// listener accepts at most kAcceptsPerRound clients, before letting everything else that can
// run go first.
constexpr int kReadsPerTurn = 4;
constexpr int kAcceptsPerRound = 64;

// One client's socket, registered with the reactor for as long as it lives. Not movable
// (epoll points at its Watch), so it lives where it was made: in a coroutine's frame.
class Connection {
 public:
  Connection(Reactor& reactor, Fd socket);
  ~Connection();  // deregisters, then closes
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The next bytes from the client, suspending until there are some. They are in the
  // reactor's read buffer, valid until this coroutine suspends again. Empty at the client's
  // EOF. Throws std::system_error when the connection has failed (a reset, for example).
  Task<std::span<const char>> read_some();
  // Sends all of bytes, suspending while the socket's send buffer is full. Throws
  // std::system_error when the connection has failed.
  Task<void> write_all(std::span<const char> bytes);

  int fd() const { return socket_.get(); }

 private:
  Reactor& reactor_;
  Fd socket_;
  Watch watch_;
  int reads_this_turn_ = 0;  // reads since this connection last waited or yielded
};

// The listening socket, registered the same way.
class Listener {
 public:
  Listener(Reactor& reactor, Fd socket);
  ~Listener();
  Listener(const Listener&) = delete;
  Listener& operator=(const Listener&) = delete;

  // The next client, suspending until one connects. Out of descriptors, it sheds waiting
  // clients (accepts and closes them, with the spare descriptor) and backs off rather than
  // spin. Throws FatalError on a failure that is not one client's.
  Task<Fd> accept();

 private:
  bool shed_one_client();

  Reactor& reactor_;
  Fd socket_;
  Fd spare_;  // held in reserve; released to accept and close one client when out of descriptors
  Watch watch_;
  int accepts_this_round_ = 0;
};

// Waits for one direction of a Watch: `co_await WaitFor{watch.reader}`. The reactor resumes
// the coroutine when an event reports that direction ready. One coroutine at a time may wait
// in a slot: a second would take the first one's place, and the first would never be resumed.
struct WaitFor {
  std::coroutine_handle<>& slot;
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> self) const noexcept {
    assert(!slot && "one coroutine at a time waits for each direction of a socket");
    slot = self;
  }
  void await_resume() const noexcept {}
};
