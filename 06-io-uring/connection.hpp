#pragma once
// Connection and Listener: sockets whose operations are awaited.

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <optional>
#include <span>
#include <stdexcept>
#include <vector>

#include "reactor.hpp"
#include "socket.hpp"
#include "task.hpp"

// The budget, as in stage 3: the listener hands out at most kAcceptsPerRound clients before
// letting everything else that can run go first. Reads need none: every send waits for its
// completion, a round later, so no connection can keep the loop to itself.
constexpr int kAcceptsPerRound = 64;

// Backpressure: the receive buffers one connection may hold (received, not yet echoed). At
// this many its multishot receive is cancelled, and the bytes wait in the kernel's socket
// buffer until it has read them all. What the kernel had already received into more buffers
// before the cancel took effect (it fills up to 32 in one go, while the socket holds bytes) is
// copied out, and those buffers go straight back: so a client that never reads holds at most
// these, and cannot take the ring from everyone else.
constexpr std::size_t kMaxBuffersHeld = 4;

// Thrown by read_some and write_all when the connection has been idle for its idle timeout:
// no byte moved either way, and it would wait for more.
class IdleTimeout : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// One client's socket and its requests in the ring: a multishot receive, armed while the
// connection reads, and one send at a time. Not movable (the ring's completions find its
// operations by address), so it lives where it was made: in a coroutine's frame.
class Connection {
 public:
  // idle_timeout: how long the connection may wait with no byte moved before read_some or
  // write_all give up with IdleTimeout; zero for never.
  Connection(Reactor& reactor, Fd socket,
             std::chrono::milliseconds idle_timeout = std::chrono::milliseconds::zero());
  // Abandons its requests in flight (cancelled; what they use stays alive until they end),
  // gives back its buffers, then closes.
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // The next bytes from the client, suspending until there are some. They are in one of the
  // loop's receive buffers, this connection's until it calls read_some again. Empty at the
  // client's EOF. Throws std::system_error when the connection has failed (a reset, for
  // example), and IdleTimeout.
  Task<std::span<const char>> read_some();
  // Sends all of bytes, suspending until the kernel has taken them. Bytes that read_some
  // returned are sent from where they are; anything else is copied first. Throws
  // std::system_error when the connection has failed, and IdleTimeout.
  Task<void> write_all(std::span<const char> bytes);

  int fd() const { return socket_.get(); }
  // Ring buffers this connection holds: received and not read yet, plus the one read last.
  std::size_t buffers_held() const { return held_ + (delivered_ ? 1 : 0); }

 private:
  // What one receive completion brought: bytes (result > 0) in a ring buffer or, over the
  // cap, copied out of it; the EOF (0); or an error (-errno).
  struct Received {
    int result;
    std::uint16_t buffer;
    std::vector<char> copy;  // the bytes, if copied
  };
  struct Receive final : Operation, BufferWaiter {
    explicit Receive(Connection& c) : connection(c) {}
    void on_completion(int result, std::uint32_t flags) override;
    void on_buffer_returned() override { connection.start_receiving(); }
    Connection& connection;
  };
  struct Send final : Operation {
    explicit Send(Connection& c) : connection(c) {}
    void on_completion(int result, std::uint32_t flags) override;
    Connection& connection;
  };
  // Where the multishot receive stands.
  enum class Receiving : std::uint8_t {
    kStopped,   // not armed: read_some arms it when it has nothing left to hand out
    kArmed,     // in flight
    kStopping,  // cancelled (backpressure), its last completion not in yet
    kStarved,   // ended with ENOBUFS: armed again when a buffer comes back to the ring
    kEnded,     // the EOF or an error came: nothing more to receive
  };

  void start_receiving();
  void on_received(int result, std::uint32_t flags);
  // Whether bytes lie in what read_some returned last.
  bool delivered_holds(std::span<const char> bytes) const;
  void release_delivered();
  // When waiting must end: idle_timeout_ after the last byte moved, or never.
  Clock::time_point idle_deadline() const;
  IdleTimeout idle_error() const;

  // Every idle connection carries all of this, inside its coroutine's frame: the small
  // fields go last, together, so that padding does not make it larger.
  Reactor& reactor_;
  Receive receive_{*this};
  Send send_{*this};
  std::vector<Received> received_;    // in order; read_some takes from the front
  std::vector<char> delivered_copy_;  // the copy read_some returned last, if it was one
  std::vector<char> outgoing_;        // a copy of bytes to send from anywhere else
  std::coroutine_handle<> reader_;    // suspended in read_some
  std::coroutine_handle<> writer_;    // suspended in write_all
  std::chrono::milliseconds idle_timeout_;
  Clock::time_point last_moved_;  // when a byte last moved, if idle_timeout_ is set
  Fd socket_;
  int sent_ = 0;                            // the last send's result
  std::optional<std::uint16_t> delivered_;  // the ring buffer read_some returned last
  std::uint16_t held_ = 0;                  // entries of received_ in a ring buffer
  Receiving receiving_ = Receiving::kStopped;
};

// The listening socket, with a multishot accept in the ring.
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
  struct Accept final : Operation {
    explicit Accept(Listener& l) : listener(l) {}
    void on_completion(int result, std::uint32_t flags) override;
    Listener& listener;
  };
  void start_accepting();
  bool shed_one_client();
  void warn_out_of_descriptors(int error);

  Reactor& reactor_;
  Fd socket_;
  Fd spare_;  // held in reserve; released to accept and close one client when out of descriptors
  Accept accept_{*this};
  std::deque<Fd> accepted_;  // clients the multishot accept took, not handed out yet
  int failed_ = 0;           // the error that ended the multishot accept, if any
  std::coroutine_handle<> waiter_;
  int accepts_this_round_ = 0;
  bool stopping_ = false;
  Clock::time_point out_of_descriptors_logged_{};
};

// An eventfd, read through the ring: another thread calls notify(), and a coroutine of this
// loop awaits wait(). How the main thread reaches a loop that sleeps in io_uring_enter.
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
  struct Read final : Operation {
    explicit Read(Wakeup& w) : wakeup(w) {}
    void on_completion(int result, std::uint32_t flags) override;
    Wakeup& wakeup;
  };

  Reactor& reactor_;
  Fd event_;
  Read read_{*this};
  // Where the kernel writes the count: kept by the reactor if this goes first (abandon).
  std::vector<char> count_ = std::vector<char>(sizeof(std::uint64_t));
  int result_ = 0;
  bool notified_ = false;
  std::coroutine_handle<> waiter_;
};
