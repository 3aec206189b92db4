#include "server.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <exception>
#include <system_error>
#include <utility>

#include "log.hpp"

namespace {

// The ways a client can be gone: nothing owed can reach it, and there is nobody to tell.
bool client_gone(const std::system_error& e) {
  switch (e.code().value()) {
    case ECONNRESET:
    case EPIPE:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

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

// One admitted connection's place, in this loop's count and in the limit. Lives in the
// connection's coroutine frame, so the place is given back however the coroutine ends:
// finished, failed, or destroyed by a loop that stops.
class Worker::Place {
 public:
  explicit Place(Worker& worker) : worker_(worker) {}
  ~Place() {
    --worker_.open_here_;
    worker_.limit_.release();
  }
  Place(const Place&) = delete;
  Place& operator=(const Place&) = delete;

 private:
  Worker& worker_;
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
  requested_.store(request, std::memory_order_release);
  wakeup_.notify();
}

bool Worker::finished() const {
  return stop_now_ || (draining_ && !accepting_ && open_here_ == 0);
}

void Worker::run() {
  reactor_.spawn(accept_clients());
  reactor_.spawn(follow_requests());
  while (!finished())
    reactor_.run_once(-1);
  counters_.closed_forced = open_here_;
  // What still runs ends here, in this loop's thread: each frame's destructors close its
  // socket and give its place back.
  reactor_.destroy_all();
  listener_.reset();
  counters_.received = reactor_.traffic().received;
  counters_.sent = reactor_.traffic().sent;
  if (!failure_.empty()) throw FatalError(failure_);
}

Task<void> Worker::accept_clients() {
  try {
    for (;;) {
      Fd client = co_await listener_->accept();
      if (!client) break;  // stopped, and nobody is queued any more
      admit(std::move(client));
    }
  } catch (const FatalError& e) {
    failure_ = name() + ": " + e.what();
    stop_now_ = true;
    co_return;
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
  ++open_here_;
  ++counters_.accepted;
  if (log_enabled(LogLevel::kDebug)) {
    log(LogLevel::kDebug, name() + ": accepted " + peer_of(client.get()) + ", " +
                              count_of(open_here_, "connection") + " open in this loop");
  }
  reactor_.spawn(serve(std::move(client)));
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

// The echo of stage 4, plus the idle timeout.
Task<void> Worker::serve(Fd socket) {
  const Place place(*this);
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
    if (!client_gone(e)) throw;  // anything else is a bug: the reactor reports it
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
