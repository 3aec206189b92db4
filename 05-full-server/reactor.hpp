#pragma once
// Reactor: edge-triggered epoll that resumes coroutines instead of calling handlers.

#include <sys/epoll.h>

#include <cassert>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <list>
#include <span>
#include <vector>

#include "socket.hpp"
#include "task.hpp"
#include "timers.hpp"

// What the reactor knows about one registered descriptor: what the kernel reported and no
// system call has used up yet (edge triggering reports each change once, as in stage 3), and
// the coroutine waiting for each direction, if any. epoll hands back a pointer to it.
struct Watch {
  bool readable = false;           // reported readable, and no recv() has found it empty since
  bool eof_queued = false;         // the EOF or an error was reported: read until recv() says so
  bool writable = true;            // no send() has found the send buffer full since the last report
  std::coroutine_handle<> reader;  // suspended until readable
  std::coroutine_handle<> writer;  // suspended until writable

  // A Watch outlives every wait in it: a waiting frame that is destroyed later empties its
  // slot (Reactor::wait), and would write into a Watch already gone. Destroy the frames first.
  ~Watch() { assert(!reader && !writer && "a coroutine still waits in a Watch being destroyed"); }
};

// Bytes asked for per recv(); one buffer for the whole reactor, so its size costs nothing
// per connection.
constexpr std::size_t kReadBufferSize = 64 * 1024;

// One thread's event loop. Two rules make it safe to resume a coroutine from an event or a
// timer, and the code below keeps both:
//  1. A round records every event of its batch before it expires a timer or resumes anything:
//     note_event() only sets flags and queues the coroutine waiting for them. So no coroutine
//     can close a socket (and free its Watch) while an event for it is still in the batch, and
//     when an event and a deadline come in the same round, the event has emptied the slot
//     before the timer looks at it: the event wins, and the coroutine is resumed once.
//  2. A coroutine waiting in a Watch or on a timer is resumed only from the ready queue, in
//     run_once(): never from inside note_event(), TimerQueue::expire(), another coroutine's
//     wake-up, or spawn().
class Reactor {
 public:
  // read_buffer_size: bytes per recv(). The unit tests make it small, to watch the budget at
  // work on a few KiB.
  explicit Reactor(std::size_t read_buffer_size = kReadBufferSize);
  // Destroys every spawned coroutine that has not finished, suspended where it waits: the
  // destructors of its locals close its sockets.
  ~Reactor();
  Reactor(const Reactor&) = delete;
  Reactor& operator=(const Reactor&) = delete;

  // Starts a coroutine that nobody awaits. The reactor owns it from now on: its frame is
  // destroyed when it finishes, or by ~Reactor if it never does. An exception that leaves it
  // is printed on stderr, one line, and ends that coroutine only; except a FatalError, which
  // is the whole loop's failure (accept cannot go on, say): run_once() throws it on.
  void spawn(Task<void> task);

  // Runs until every spawned coroutine has finished. Throws FatalError.
  void run();
  // One round: waits up to timeout_ms for events (not at all while coroutines are ready to
  // run), then resumes the coroutines that can go on. For run() and the unit tests. Throws
  // FatalError, its own (epoll_wait) or one that left a spawned coroutine, at once.
  void run_once(int timeout_ms);

  // Registers fd once, for everything, edge-triggered; watch must stay put until remove().
  void add(int fd, Watch& watch);
  // Deregisters fd, before it is closed (a dup would keep a registration alive).
  void remove(int fd);

  // Queues a coroutine to be resumed in this round or the next, in order.
  void schedule(std::coroutine_handle<> coroutine) { ready_.push_back(coroutine); }

  // `co_await reactor.yield()`: to the back of the queue, so that every other coroutine that
  // can run gets its turn first. How a busy connection stays fair.
  auto yield() {
    struct Yield {
      Reactor& reactor;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> self) { reactor.schedule(self); }
      void await_resume() const noexcept {}
    };
    return Yield{*this};
  }

  // `co_await reactor.sleep_for(d)`: resumed once d has passed. Destroying the sleeping
  // coroutine cancels its timer.
  auto sleep_for(std::chrono::milliseconds delay) {
    struct Sleep {
      Reactor& reactor;
      Clock::time_point until;
      Timer timer;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> self) { reactor.timers_.arm(timer, until, self); }
      void await_resume() const noexcept {}
    };
    return Sleep{*this, Clock::now() + delay, {}};
  }

  // `co_await reactor.wait(slot, deadline)`: suspends until an event resumes the coroutine
  // through slot (a Watch direction), or deadline passes, whichever comes first. True for the
  // event, false for the deadline. kNever: no timer at all.
  auto wait(std::coroutine_handle<>& slot, Clock::time_point deadline) {
    struct Wait {
      Reactor& reactor;
      std::coroutine_handle<>& slot;
      Clock::time_point deadline;
      Timer timer;
      std::coroutine_handle<> self{};
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> coroutine) {
        // One coroutine at a time may wait in a slot: a second would take the first one's
        // place, and the first would never be resumed.
        assert(!slot && "one coroutine at a time waits for each direction of a socket");
        self = coroutine;
        slot = coroutine;
        if (deadline != kNever) reactor.timers_.arm(timer, deadline, coroutine, &slot);
      }
      bool await_resume() {
        reactor.timers_.cancel(timer);
        return !timer.expired();
      }
      // Destroyed with a frame that still waits: nothing may resume that frame any more.
      ~Wait() {
        if (self && slot == self) slot = {};
      }
    };
    return Wait{*this, slot, deadline, {}, {}};
  }

  // The one buffer every recv() of this loop reads into: what it holds stays valid until the
  // reading coroutine suspends again.
  std::span<char> read_buffer() { return read_buffer_; }

  // Destroys every spawned coroutine that has not finished, where it waits, as the destructor
  // does: how a loop that stops ends what it still runs, in its own thread.
  void destroy_all();

  // Bytes moved by the connections of this reactor, counted by Connection.
  struct Traffic {
    std::uint64_t received = 0;
    std::uint64_t sent = 0;
  };
  Traffic& traffic() { return traffic_; }

  int epoll_fd() const { return epoll_.get(); }
  std::size_t spawned_count() const { return spawned_.size(); }
  std::size_t timer_count() const { return timers_.size(); }

 private:
  class Root;
  void note_event(Watch& watch, std::uint32_t events);
  int wait_timeout_ms(int requested) const;
  void retire(std::list<Root>::iterator root);

  Fd epoll_;
  std::vector<epoll_event> events_;            // reused by every epoll_wait
  std::deque<std::coroutine_handle<>> ready_;  // coroutines to resume, in order
  // Before spawned_: the frames destroyed with spawned_ hold timers that leave this queue.
  TimerQueue timers_;
  std::vector<char> read_buffer_;
  Traffic traffic_;
  std::list<Root> spawned_;     // every spawned coroutine not finished yet
  std::exception_ptr failure_;  // a FatalError that left a spawned coroutine, for run_once()
};
