#pragma once
// Timers: deadlines kept in a binary min-heap that records where each timer sits, so that a
// timer can be cancelled in O(log n) when what it guards happens first.

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <vector>

using Clock = std::chrono::steady_clock;

// "No deadline": a wait that only its event can end.
constexpr Clock::time_point kNever = Clock::time_point::max();

class TimerQueue;

// One pending deadline, owned by whoever waits for it (an awaiter in a coroutine's frame): the
// queue only points at it. When the deadline passes, the queue resumes `coroutine`, unless
// `also_waiting_in` names a slot that no longer holds it (the event came first). Destroying an
// armed timer cancels it, so a frame destroyed while it waits leaves nothing behind.
class Timer {
 public:
  Timer() = default;
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer();

  bool armed() const { return queue_ != nullptr; }
  // True once the deadline has passed and the queue has resumed (queued) the coroutine.
  bool expired() const { return expired_; }
  Clock::time_point deadline() const { return deadline_; }

 private:
  friend class TimerQueue;

  Clock::time_point deadline_ = kNever;
  std::coroutine_handle<> coroutine_;
  std::coroutine_handle<>* also_waiting_in_ = nullptr;
  TimerQueue* queue_ = nullptr;  // set while armed
  std::size_t index_ = 0;        // its place in queue_->heap_
  bool expired_ = false;
};

class TimerQueue {
 public:
  TimerQueue() = default;
  TimerQueue(const TimerQueue&) = delete;
  TimerQueue& operator=(const TimerQueue&) = delete;
  ~TimerQueue();

  // Arms timer to resume coroutine at deadline. If also_waiting_in is given, the coroutine is
  // also waiting there (for a completion): at the deadline the slot is cleared, so that the
  // event cannot resume it a second time; if the slot no longer holds it, the event won and
  // the timer does nothing.
  void arm(Timer& timer, Clock::time_point deadline, std::coroutine_handle<> coroutine,
           std::coroutine_handle<>* also_waiting_in = nullptr);
  // Takes timer out of the queue, if it is in.
  void cancel(Timer& timer);

  // Every timer whose deadline is at or before now leaves the queue, earliest first, and
  // its coroutine is passed to resume (a function taking std::coroutine_handle<>).
  template <typename Resume>
  void expire(Clock::time_point now, Resume&& resume) {
    while (!heap_.empty() && heap_.front()->deadline_ <= now) {
      Timer& timer = *heap_.front();
      cancel(timer);
      if (timer.also_waiting_in_) {
        if (*timer.also_waiting_in_ != timer.coroutine_) continue;  // the event came first
        *timer.also_waiting_in_ = {};
      }
      timer.expired_ = true;
      resume(timer.coroutine_);
    }
  }

  bool empty() const { return heap_.empty(); }
  std::size_t size() const { return heap_.size(); }
  // The earliest deadline; kNever when the queue is empty.
  Clock::time_point next_deadline() const { return heap_.empty() ? kNever : heap_[0]->deadline_; }

 private:
  void place(std::size_t index, Timer* timer);
  void sift_up(std::size_t index);
  void sift_down(std::size_t index);

  std::vector<Timer*> heap_;  // heap_[0] has the earliest deadline
};
