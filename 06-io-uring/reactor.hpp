#pragma once
// Reactor: an io_uring that resumes coroutines when their requests complete.

#include <liburing.h>

#include <cassert>
#include <chrono>
#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <exception>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

#include "buffer_ring.hpp"
#include "socket.hpp"
#include "task.hpp"
#include "timers.hpp"

// io_uring cannot be used here: the kernel lacks it or forbids it. what() is the one line main
// prints after "error: ", and says what to do.
class IoUringUnavailable : public FatalError {
 public:
  explicit IoUringUnavailable(const std::string& reason)
      : FatalError("io_uring unavailable: " + reason) {}
};

// The advice every IoUringUnavailable ends with.
inline constexpr const char* kRunStageFive = "run stage 5 instead: make run STAGE=5";

// One request in the ring, as its owner (a Connection, Listener or Wakeup) sees it: the owner
// hands each of its completions to on_completion(). From the reactor's prepare() until its
// last completion (one without IORING_CQE_F_MORE) the request is in flight, and whatever memory
// it reads or writes is the kernel's. An owner that goes away before that must abandon() it.
class Operation {
 public:
  bool in_flight() const { return token_ != 0; }
  std::uint64_t token() const { return token_; }
  // Records what happened and queues the coroutine that waits for it; resumes nothing.
  virtual void on_completion(int result, std::uint32_t flags) = 0;

 protected:
  Operation() = default;
  Operation(const Operation&) = delete;
  Operation& operator=(const Operation&) = delete;
  ~Operation() { assert(!in_flight() && "an operation in flight was destroyed, not abandoned"); }

 private:
  friend class Reactor;
  std::uint64_t token_ = 0;  // its user_data while in flight: slot and generation; 0 when not
};

// A connection whose multishot receive ended because the buffer ring ran dry (ENOBUFS): told
// when a buffer comes back, to ask again.
class BufferWaiter {
 public:
  virtual void on_buffer_returned() = 0;

 protected:
  ~BufferWaiter() = default;
};

// What an abandoned request may still use (Reactor::abandon), released with its last
// completion.
struct Leftovers {
  std::vector<char> keep_alive;              // bytes it reads or writes
  std::optional<std::uint16_t> held_buffer;  // a ring buffer it sends from
  bool closes_results = false;               // its results are new descriptors (accept)
};

// The loop's receive buffers: many enough that a loop's connections rarely find the ring dry;
// 4 MiB per loop, resident only once used, and held by no idle connection. Their size is also
// a connection's turn: a multishot receive fills up to 32 buffers from one socket before the
// kernel moves on to the next, so 16 KiB makes a turn of 512 KiB. 64 KiB would send as
// stage 5 does, a quarter as often on bulk, but let one flooding client take 2 MiB at a time.
constexpr std::size_t kReceiveBufferSize = 16 * 1024;
constexpr unsigned kReceiveBuffers = 256;

// One thread's event loop. The rules of stage 5 still hold, with completions for events:
//  1. A round hands every completion of its batch to its operation before it expires a timer
//     or resumes anything: on_completion() only records and queues the coroutine waiting for
//     it. When a completion and a deadline come in the same round, the completion has emptied
//     the slot before the timer looks at it: it wins, and the coroutine is resumed once.
//  2. A coroutine waiting for a completion or on a timer is resumed only from the ready queue,
//     in run_once(): never from inside on_completion(), TimerQueue::expire(), another
//     coroutine's wake-up, or spawn().
// And one more: every request's memory outlives the request (see Operation and abandon()).
class Reactor {
 public:
  // The buffer ring's shape: the unit tests make it small, to see it run dry. Throws
  // IoUringUnavailable where io_uring cannot be used (or NO_IO_URING is set), else FatalError.
  explicit Reactor(std::size_t buffer_size = kReceiveBufferSize,
                   unsigned buffer_count = kReceiveBuffers);
  // Destroys every spawned coroutine that has not finished, then waits for the requests
  // still in flight (quiesce()): only then may their memory go.
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
  // One round: submits what was prepared and waits for completions, both in one
  // io_uring_enter, up to timeout_ms (not at all while coroutines are ready to run); then
  // resumes the coroutines that can go on. The first round binds the ring to the calling
  // thread. Throws FatalError, its own (io_uring_enter) or one that left a spawned coroutine.
  void run_once(int timeout_ms);

  // A submission queue entry for op, tagged with op's token; the caller fills it in
  // (io_uring_prep_*, which leave the tag alone). The kernel sees it at the next round.
  io_uring_sqe* prepare(Operation& op);
  // Asks the kernel to end op early: it completes with -ECANCELED (or with what it had
  // already done). op stays in flight until that completion.
  void cancel(const Operation& op);
  // op's owner is going away with op in flight: cancels it, and from now on its completions
  // only give back the buffers they carry (and close the descriptors they bring).
  void abandon(Operation& op, Leftovers leftovers = {});

  // The loop's receive buffers.
  BufferRing& buffers() { return buffers_; }
  // Gives a buffer back to the ring. A receive that ended for want of one asks again at the
  // start of the next round.
  void give_back(std::uint16_t id);
  // waiter's receive ended with ENOBUFS: on_buffer_returned() in the first round that starts
  // with a buffer in the ring.
  void wait_for_buffer(BufferWaiter& waiter);
  void stop_waiting_for_buffer(BufferWaiter& waiter);

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

  // `co_await reactor.wait(slot, deadline)`: suspends until a completion resumes the coroutine
  // through slot (where an operation's owner keeps its waiter), or deadline passes, whichever comes
  // first. True for the event, false for the deadline. kNever: no timer at all.
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

  // Destroys every spawned coroutine that has not finished, where it waits, as the destructor
  // does: how a loop that stops ends what it still runs, in its own thread.
  void destroy_all();
  // Cancels every request still in flight and waits for their last completions, in the
  // ring's thread: after this the kernel touches none of the loop's memory.
  void quiesce();

  // Bytes moved by the connections of this reactor, counted by Connection.
  struct Traffic {
    std::uint64_t received = 0;
    std::uint64_t sent = 0;
  };
  Traffic& traffic() { return traffic_; }

  int ring_fd() const { return ring_.uring.ring_fd; }
  std::size_t spawned_count() const { return spawned_.size(); }
  std::size_t timer_count() const { return timers_.size(); }
  std::size_t in_flight() const { return in_flight_; }
  // Completions whose user_data named no request in flight: always a bug (a slot reused while
  // its request could still complete). The tests check it stays zero.
  std::uint64_t stale_completions() const { return stale_completions_; }
  // For the tests: a no-op whose completion carries user_data, as a stale one would.
  void post_for_test(std::uint64_t user_data);

 private:
  class Root;
  // What the reactor keeps for each request in flight, found through its token: 16 bytes,
  // since every idle connection's receive has one.
  struct Slot {
    Operation* owner = nullptr;  // null once abandoned
    std::uint32_t generation = 0;
    bool busy = false;
  };
  io_uring_sqe* next_sqe();
  void enter(int timeout_ms);
  void reap();
  void complete(const io_uring_cqe& cqe);
  void release(std::uint32_t index);
  int wait_timeout_ms(int requested) const;
  void retire(std::list<Root>::iterator root);

  // The io_uring itself, set up for one thread (see reactor.cpp); first, so closed last.
  struct Ring {
    Ring();
    ~Ring();
    io_uring uring{};
  };
  Ring ring_;
  bool bound_ = false;  // the ring is enabled, for the thread that ran the first round
  BufferRing buffers_;
  std::vector<Slot> slots_;
  std::vector<std::uint32_t> free_slots_;
  // What each abandoned request still uses, by slot; few at a time, so kept apart from slots_.
  std::unordered_map<std::uint32_t, Leftovers> leftovers_;
  std::size_t in_flight_ = 0;
  std::uint64_t stale_completions_ = 0;
  std::deque<BufferWaiter*> starved_;          // receives waiting for a buffer, in order
  std::deque<std::coroutine_handle<>> ready_;  // coroutines to resume, in order
  // Before spawned_: the frames destroyed with spawned_ hold timers that leave this queue.
  TimerQueue timers_;
  Traffic traffic_;
  std::list<Root> spawned_;     // every spawned coroutine not finished yet
  std::exception_ptr failure_;  // a FatalError that left a spawned coroutine, for run_once()
};
