#include "reactor.hpp"

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstring>
#include <iostream>
#include <string>
#include <system_error>
#include <utility>

namespace {

// Events taken per epoll_wait; more are not lost (edge-triggered epoll keeps them for the next).
constexpr std::size_t kMaxEventsPerRound = 1024;

// What every descriptor is registered for, once. As in stage 3: EPOLLOUT is reported only
// when room frees up after a send() found the buffer full, and EPOLLRDHUP says the EOF waits.
constexpr std::uint32_t kWatchedEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

}  // namespace

// The root of a spawned coroutine: a coroutine of its own that awaits the task, prints what
// escapes it (a FatalError it hands to the reactor instead), and at its end takes itself off
// the reactor's list and frees its frame.
class Reactor::Root {
 public:
  struct promise_type {
    Root get_return_object() { return Root(Frame::from_promise(*this)); }
    // Started by the reactor's queue, once spawn() has put it on the list.
    std::suspend_always initial_suspend() const noexcept { return {}; }
    auto final_suspend() const noexcept {
      struct Retire {
        bool await_ready() const noexcept { return false; }
        // Suspended at its end, a coroutine may be destroyed, here included: nothing of
        // this frame is touched after retire() returns.
        void await_suspend(std::coroutine_handle<promise_type> self) const noexcept {
          self.promise().reactor->retire(self.promise().self);
        }
        void await_resume() const noexcept {}
      };
      return Retire{};
    }
    void return_void() const noexcept {}
    // Only a FatalError gets this far (run() catches the rest): the loop's to handle.
    void unhandled_exception() const noexcept { reactor->failure_ = std::current_exception(); }

    Reactor* reactor = nullptr;
    std::list<Root>::iterator self;  // its place in reactor->spawned_
  };
  using Frame = std::coroutine_handle<promise_type>;

  static Root run(Task<void> task) {
    try {
      co_await std::move(task);
    } catch (const FatalError&) {
      throw;  // not this coroutine's failure but the loop's: run_once() throws it on
    } catch (const std::exception& e) {
      std::cerr << "error: a spawned coroutine failed: " << e.what() << "\n";
    } catch (...) {
      std::cerr << "error: a spawned coroutine failed with an unknown exception\n";
    }
  }

  Root(Root&& other) noexcept : frame_(std::exchange(other.frame_, {})) {}
  Root(const Root&) = delete;
  ~Root() {
    if (frame_) frame_.destroy();
  }
  Frame frame() const { return frame_; }
  Frame release() { return std::exchange(frame_, {}); }

 private:
  explicit Root(Frame frame) : frame_(frame) {}
  Frame frame_;
};

Reactor::Reactor(std::size_t read_buffer_size)
    : events_(kMaxEventsPerRound), read_buffer_(read_buffer_size) {
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) throw FatalError(std::string("epoll_create1: ") + std::strerror(errno));
}

Reactor::~Reactor() {
  // Nothing is resumed from here on; then every unfinished coroutine is destroyed where it
  // waits, its locals (and the sockets among them) with it.
  ready_.clear();
  sleepers_.clear();
  spawned_.clear();
}

void Reactor::spawn(Task<void> task) {
  spawned_.push_front(Root::run(std::move(task)));
  const auto root = spawned_.begin();
  root->frame().promise().reactor = this;
  root->frame().promise().self = root;
  schedule(root->frame());
}

void Reactor::retire(std::list<Root>::iterator root) {
  const Root::Frame frame = root->release();
  spawned_.erase(root);
  frame.destroy();
}

void Reactor::run() {
  while (!spawned_.empty())
    run_once(-1);
}

void Reactor::run_once(int timeout_ms) {
  // Coroutines ready to run: look for events, but do not sleep.
  const int waited = ready_.empty() ? wait_timeout_ms(timeout_ms) : 0;
  const int count =
      epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()), waited);
  if (count < 0) {
    if (errno == EINTR) return;
    throw FatalError(std::string("epoll_wait: ") + std::strerror(errno));
  }
  // Events only record what the kernel said and queue the coroutines waiting for it: none
  // runs, so none can close a socket, until the whole batch has been read.
  for (const epoll_event& event : std::span(events_).first(static_cast<std::size_t>(count))) {
    note_event(*static_cast<Watch*>(event.data.ptr), event.events);
  }
  wake_sleepers();
  // Resume what was queued before this point, in order. What these queue (a yield, a task
  // that spawns one) runs in the next round, after the next look for events.
  for (std::size_t n = ready_.size(); n > 0; --n) {
    const std::coroutine_handle<> next = ready_.front();
    ready_.pop_front();
    next.resume();
    // A coroutine that ended with a FatalError ends the loop, not only itself.
    if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
  }
}

void Reactor::note_event(Watch& watch, std::uint32_t events) {
  const bool eof_queued = events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
  if ((events & EPOLLIN) || eof_queued) {
    watch.readable = true;
    if (eof_queued) watch.eof_queued = true;
    if (watch.reader) schedule(std::exchange(watch.reader, {}));
  }
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) {
    watch.writable = true;
    if (watch.writer) schedule(std::exchange(watch.writer, {}));
  }
}

void Reactor::wake_sleepers() {
  if (sleepers_.empty()) return;
  const auto now = std::chrono::steady_clock::now();
  const auto due = std::partition(sleepers_.begin(), sleepers_.end(),
                                  [&](const Sleeper& s) { return s.until > now; });
  for (auto it = due; it != sleepers_.end(); ++it)
    schedule(it->coroutine);
  sleepers_.erase(due, sleepers_.end());
}

int Reactor::wait_timeout_ms(int requested) const {
  if (sleepers_.empty()) return requested;
  const auto next =
      std::min_element(sleepers_.begin(), sleepers_.end(), [](const Sleeper& a, const Sleeper& b) {
        return a.until < b.until;
      })->until;
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(next - std::chrono::steady_clock::now()).count();
  const int until_next = left > 0 ? static_cast<int>(left) : 0;
  return requested < 0 ? until_next : std::min(requested, until_next);
}

void Reactor::add(int fd, Watch& watch) {
  epoll_event event{};
  event.events = kWatchedEvents;
  event.data.ptr = &watch;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
    throw std::system_error(errno, std::generic_category(), "epoll_ctl ADD");
  }
}

void Reactor::remove(int fd) {
  // Fails only if fd was never added: a bug, but this runs in destructors, which must not
  // throw; the assertion catches it in the tests.
  [[maybe_unused]] const int result = epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
  assert(result == 0 && "remove() of a descriptor that was not added");
}
