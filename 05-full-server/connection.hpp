#pragma once
// Connection and Listener: sockets whose operations are awaited.

#include <chrono>
#include <cstddef>
#include <span>
#include <stdexcept>

#include "reactor.hpp"
#include "socket.hpp"
#include "task.hpp"

// The budgets, as in stage 3: a connection reads at most kReadsPerTurn times, and the
// listener accepts at most kAcceptsPerRound clients, before letting everything else that can
// run go first.
constexpr int kReadsPerTurn = 4;
constexpr int kAcceptsPerRound = 64;

// Thrown by read_some and write_all when the connection has been idle for its idle timeout:
// no byte moved either way, and it would wait for more.
class IdleTimeout : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One client's socket, registered with the reactor for as long as it lives. Not movable
// (epoll points at its Watch), so it lives where it was made: in a coroutine's frame.
class Connection {
 public:
  // idle_timeout: how long the connection may wait with no byte moved before read_some or
  // write_all give up with IdleTimeout; zero for never.
  Connection(Reactor& reactor, Fd socket,
             std::chrono::milliseconds idle_timeout = std::chrono::milliseconds::zero());
  ~Connection();  // deregisters, then closes
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The next bytes from the client, suspending until there are some. They are in the
  // reactor's read buffer, valid until this coroutine suspends again. Empty at the client's
  // EOF. Throws std::system_error when the connection has failed (a reset, for example), and
  // IdleTimeout.
  Task<std::span<const char>> read_some();
  // Sends all of bytes, suspending while the socket's send buffer is full. Throws
  // std::system_error when the connection has failed, and IdleTimeout.
  Task<void> write_all(std::span<const char> bytes);

  int fd() const { return socket_.get(); }

 private:
  // When waiting must end: idle_timeout_ after the last byte moved, or never.
  Clock::time_point idle_deadline() const;
  IdleTimeout idle_error() const;

  Reactor& reactor_;
  Fd socket_;
  Watch watch_;
  int reads_this_turn_ = 0;  // reads since this connection last waited or yielded
  std::chrono::milliseconds idle_timeout_;
  Clock::time_point last_moved_;  // when a byte last moved, if idle_timeout_ is set
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
  // spin. After stop(): the clients already queued, then an empty Fd once the queue is empty.
  // Throws FatalError on a failure that is not one client's.
  Task<Fd> accept();

  // Stop waiting for new clients: accept() hands out what the kernel has queued, then ends.
  void stop();

 private:
  bool shed_one_client();
  void warn_out_of_descriptors(int error);

  Reactor& reactor_;
  Fd socket_;
  Fd spare_;  // held in reserve; released to accept and close one client when out of descriptors
  Watch watch_;
  int accepts_this_round_ = 0;
  bool stopping_ = false;
  Clock::time_point out_of_descriptors_logged_{};
};

// An eventfd: another thread calls notify(), and a coroutine of this loop awaits wait(). How
// the main thread reaches a loop that sleeps in epoll_wait.
class Wakeup {
 public:
  explicit Wakeup(Reactor& reactor);
  ~Wakeup();
  Wakeup(const Wakeup&) = delete;
  Wakeup& operator=(const Wakeup&) = delete;

  // From any thread. Never blocks; notifications before a wait() are merged into one.
  void notify();
  // Suspends until notify() has been called since the last wait() returned.
  Task<void> wait();

 private:
  Reactor& reactor_;
  Fd event_;
  Watch watch_;
};
