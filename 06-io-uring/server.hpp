#pragma once
// The server: one Worker per thread, each an event loop with its own SO_REUSEPORT listener,
// and the one thing the workers share, the connection limit.

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "connection.hpp"
#include "options.hpp"
#include "reactor.hpp"
#include "socket.hpp"
#include "task.hpp"

// Open connections over all loops, and the most there may be. Used by every loop's thread.
class ConnectionLimit {
 public:
  explicit ConnectionLimit(std::size_t max) : max_(max) {}  // 0: no limit
  // Takes a place for one more connection; false, taking nothing, when all are taken.
  bool try_acquire();
  void release() { open_.fetch_sub(1, std::memory_order_relaxed); }
  std::size_t open() const { return open_.load(std::memory_order_relaxed); }
  std::size_t max() const { return max_; }

 private:
  const std::size_t max_;
  std::atomic<std::size_t> open_{0};
};

// What a loop counts, for the log when it stops.
struct LoopCounters {
  std::uint64_t accepted = 0;       // admitted and served
  std::uint64_t turned_away = 0;    // over --max-connections: closed at once
  std::uint64_t closed_idle = 0;    // closed by the idle timeout
  std::uint64_t closed_forced = 0;  // still open when the loop stopped
  std::uint64_t received = 0;       // bytes
  std::uint64_t sent = 0;
};

LoopCounters& operator+=(LoopCounters& total, const LoopCounters& more);
// "17 connections accepted, 0 turned away, 1 closed idle, 0 closed at shutdown; 1200 bytes
// received, 1200 sent": the counters as a log line says them.
std::string describe(const LoopCounters& counters);

// What the errno of a failed call on one client's socket means for the server.
enum class ClientError {
  kGone,         // the client, or the way to it, is gone: close it quietly, nobody is left to tell
  kOutOfMemory,  // the kernel is short of memory: close this connection, say so, serve the rest
  kUnexpected,   // nothing a client can cause: a bug, which the reactor reports
};
ClientError classify_client_error(int error);

// What another thread can ask of a running loop, in rising order: a request only ever raises
// what was asked before it.
enum class Request {
  kNone,
  kDrain,    // stop accepting (after taking what is queued), finish open connections, stop
  kStopNow,  // stop now, closing what is open
};

// One event loop: a reactor, its listener, the coroutines of its connections. Made in one
// thread, run in another, asked to stop from the first.
class Worker {
 public:
  Worker(unsigned index, Fd listener, const Options& options, ConnectionLimit& limit);
  Worker(const Worker&) = delete;
  Worker& operator=(const Worker&) = delete;

  // Runs the loop in the calling thread until it has stopped (after request(), or a fatal
  // error); then destroys what it still runs, in this thread. Throws what ended the loop when
  // it failed: a FatalError (or std::bad_alloc), once everything has been destroyed.
  void run();
  // From any thread. Only ever raises what was asked: kStopNow after kDrain stops now, and a
  // kDrain after kStopNow changes nothing.
  void request(Request request);

  unsigned index() const { return index_; }
  std::string name() const;  // "loop 0", for log lines
  // Safe to read once run() has returned.
  const LoopCounters& counters() const { return counters_; }

 private:
  class Place;
  Task<void> accept_clients();
  void admit(Fd client);
  void turn_away();
  Task<void> serve(Place place, Fd client);
  Task<void> follow_requests();
  Task<void> enforce_shutdown_timeout();
  bool finished() const;

  const unsigned index_;
  const Options& options_;
  ConnectionLimit& limit_;
  // First, so destroyed last: listener_ and wakeup_ hold requests in its ring. The frames it
  // owns wait in their owners' slots, so run() destroys those frames before it returns.
  Reactor reactor_;
  std::optional<Listener> listener_;  // reset once it has stopped and its queue is empty
  Wakeup wakeup_;
  std::atomic<Request> requested_{Request::kNone};

  bool accepting_ = true;  // until the listener is closed
  bool draining_ = false;  // a kDrain request came
  bool stop_now_ = false;  // a kStopNow request came, or the shutdown timeout passed
  std::size_t open_here_ = 0;
  LoopCounters counters_;
  std::uint64_t turned_away_unlogged_ = 0;
  Clock::time_point turned_away_logged_{};
};
