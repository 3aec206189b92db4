#include "server.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <exception>
#include <system_error>
#include <utility>

#include "log.hpp"

namespace {

// How often, at most, a loop logs that it turns clients away: a flood of connects must not
// become a flood of log lines.
constexpr std::chrono::seconds kTurnedAwayLogInterval{1};

std::string peer_of(int fd) {
  try {
    return peer_address(fd);
  } catch (const FatalError&) {
    return "a client that is already gone";
  }
}

}  // namespace

ClientError classify_client_error(int error) {
  switch (error) {
    case ECONNRESET:    // the client reset the connection
    case EPIPE:         // it closed its side for good, and we wrote on
    case ETIMEDOUT:     // it stopped acknowledging: the retransmissions gave up
    case EHOSTUNREACH:  // the network says it cannot be reached any more (an ICMP error, or
    case ENETUNREACH:   // the route or the interface it was reached through is gone)
    case ENETDOWN:
    case EHOSTDOWN:
      return ClientError::kGone;
    case ENOMEM:   // the kernel could not allocate for this connection: it cannot be served now,
    case ENOBUFS:  // and the others may still be
      return ClientError::kOutOfMemory;
    default:
      return ClientError::kUnexpected;
  }
}

bool ConnectionLimit::try_acquire() {
  const std::size_t before = open_.fetch_add(1, std::memory_order_relaxed);
  if (max_ == 0 || before < max_) return true;
  open_.fetch_sub(1, std::memory_order_relaxed);  // over the limit: give the place back
  return false;
}

LoopCounters& operator+=(LoopCounters& total, const LoopCounters& more) {
  total.accepted += more.accepted;
  total.turned_away += more.turned_away;
  total.closed_idle += more.closed_idle;
  total.closed_forced += more.closed_forced;
  total.received += more.received;
  total.sent += more.sent;
  return total;
}

std::string describe(const LoopCounters& c) {
  return count_of(c.accepted, "connection") + " accepted, " + std::to_string(c.turned_away) +
         " turned away, " + std::to_string(c.closed_idle) + " closed idle, " +
         std::to_string(c.closed_forced) + " closed at shutdown; " + count_of(c.received, "byte") +
         " received, " + std::to_string(c.sent) + " sent";
}

// One admitted connection's place, in this loop's count and in the limit. admit() makes it
// the moment the limit grants the place, and moves it into the connection's coroutine as a
// parameter: a coroutine's parameters live in its frame from the call on, before its lazy body
// starts. So the place is given back however the coroutine ends (finished, failed, destroyed
// by a loop that stops, started or not), and if spawn() fails, with the frame it was to own.
class Worker::Place {
 public:
  explicit Place(Worker& worker) : worker_(&worker) { ++worker.open_here_; }
  Place(Place&& other) noexcept : worker_(std::exchange(other.worker_, nullptr)) {}
  Place& operator=(Place&&) = delete;
  ~Place() {
    if (!worker_) return;  // moved into the frame, which gives it back
    --worker_->open_here_;
    worker_->limit_.release();
  }

 private:
  Worker* worker_;
};

Worker::Worker(unsigned index, Fd listener, const Options& options, ConnectionLimit& limit)
    : index_(index),
      options_(options),
      limit_(limit),
      listener_(std::in_place, reactor_, std::move(listener)),
      wakeup_(reactor_) {}

std::string Worker::name() const {
  return "loop " + std::to_string(index_);
}

void Worker::request(Request request) {
  // Only up: a kDrain that comes after kStopNow (a loop that failed after a second signal) must
  // not turn it back into a drain before this loop has even read it.
  Request asked = requested_.load(std::memory_order_relaxed);
  while (asked < request &&
         !requested_.compare_exchange_weak(asked, request, std::memory_order_release,
                                           std::memory_order_relaxed)) {
  }
  wakeup_.notify();
}

bool Worker::finished() const {
  return stop_now_ || (draining_ && !accepting_ && open_here_ == 0);
}

void Worker::run() {
  std::exception_ptr failure;
  try {
    reactor_.spawn(accept_clients());
    reactor_.spawn(follow_requests());
    while (!finished())
      reactor_.run_once(-1);
  } catch (...) {
    // A FatalError (io_uring_enter, accept, the wake-up) or std::bad_alloc: this loop cannot go
    // on. It ends the way a stop-now does, and throws what ended it once that is done.
    failure = std::current_exception();
  }
  counters_.closed_forced = open_here_;
  // What still runs ends here, in this loop's thread, however the loop ended: each frame's
  // destructors close its socket and give its place back, and its waits leave the slots of
  // listener_ and wakeup_ while those exist. (~Reactor would be too late: it runs after
  // them.)
  reactor_.destroy_all();
  listener_.reset();
  // Their requests were abandoned, not ended: wait for the kernel to let go of every one,
  // here in the ring's own thread, before any memory they use can go.
  reactor_.quiesce();
  counters_.received = reactor_.traffic().received;
  counters_.sent = reactor_.traffic().sent;
  if (failure) std::rethrow_exception(failure);
}

// A failure of the listener (a FatalError out of accept) is the loop's: the reactor throws it
// out of run_once(), into run().
Task<void> Worker::accept_clients() {
  for (;;) {
    Fd client = co_await listener_->accept();
    if (!client) break;  // stopped, and nobody is queued any more
    admit(std::move(client));
  }
  // Only now: closing a listener resets the connections still in its accept queue.
  listener_.reset();
  accepting_ = false;
  log(LogLevel::kDebug,
      name() + ": listener closed, " + count_of(open_here_, "connection") + " still open");
}

void Worker::admit(Fd client) {
  if (!limit_.try_acquire()) {
    turn_away();
    return;  // client is closed here
  }
  Place place(*this);  // what try_acquire() took, given back however this connection ends
  ++counters_.accepted;
  if (log_enabled(LogLevel::kDebug)) {
    log(LogLevel::kDebug, name() + ": accepted " + peer_of(client.get()) + ", " +
                              count_of(open_here_, "connection") + " open in this loop");
  }
  reactor_.spawn(serve(std::move(place), std::move(client)));
}

void Worker::turn_away() {
  ++counters_.turned_away;
  ++turned_away_unlogged_;
  const auto now = Clock::now();
  if (now - turned_away_logged_ < kTurnedAwayLogInterval) return;
  log(LogLevel::kWarn, name() + ": --max-connections " + std::to_string(limit_.max()) +
                           " reached: closed " + count_of(turned_away_unlogged_, "new connection") +
                           " at once");
  turned_away_logged_ = now;
  turned_away_unlogged_ = 0;
}

// The echo of stage 4, plus the idle timeout. place is this connection's, from admit().
Task<void> Worker::serve([[maybe_unused]] Place place, Fd socket) {
  Connection client(reactor_, std::move(socket), options_.idle_timeout);
  try {
    for (;;) {
      const std::span<const char> bytes = co_await client.read_some();
      if (bytes.empty()) break;          // EOF: everything read has been echoed
      co_await client.write_all(bytes);  // no more reading until this is all sent
    }
  } catch (const IdleTimeout& e) {
    ++counters_.closed_idle;
    log(LogLevel::kDebug, name() + ": closed a connection " + e.what());
  } catch (const std::system_error& e) {
    const ClientError error = classify_client_error(e.code().value());
    if (error == ClientError::kUnexpected) throw;  // a bug: the reactor reports it
    if (error == ClientError::kOutOfMemory) {
      log(LogLevel::kWarn,
          name() + ": closing a connection: " + e.what() + " (the kernel is short of memory)");
    }
  }
}  // ~Connection: deregistered and closed; ~Place: its place given back

Task<void> Worker::follow_requests() {
  for (;;) {
    co_await wakeup_.wait();
    const Request request = requested_.load(std::memory_order_acquire);
    if (request == Request::kStopNow) {
      stop_now_ = true;
    } else if (request == Request::kDrain && !draining_) {
      draining_ = true;
      if (listener_) listener_->stop();
      reactor_.spawn(enforce_shutdown_timeout());
    }
  }
}

Task<void> Worker::enforce_shutdown_timeout() {
  co_await reactor_.sleep_for(options_.shutdown_timeout);
  if (open_here_ > 0) {
    log(LogLevel::kWarn, name() + ": shutdown timeout: closing " +
                             count_of(open_here_, "connection") + " still open");
  }
  stop_now_ = true;
}
