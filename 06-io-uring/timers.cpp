#include "timers.hpp"

#include <cassert>
#include <utility>

Timer::~Timer() {
  if (queue_) queue_->cancel(*this);
}

TimerQueue::~TimerQueue() {
  // Timers outliving their queue must not try to leave it later.
  for (Timer* timer : heap_)
    timer->queue_ = nullptr;
}

void TimerQueue::arm(Timer& timer, Clock::time_point deadline, std::coroutine_handle<> coroutine,
                     std::coroutine_handle<>* also_waiting_in) {
  assert(!timer.armed() && "a timer is armed once at a time");
  timer.deadline_ = deadline;
  timer.coroutine_ = coroutine;
  timer.also_waiting_in_ = also_waiting_in;
  timer.expired_ = false;
  timer.queue_ = this;
  heap_.push_back(&timer);
  timer.index_ = heap_.size() - 1;
  sift_up(timer.index_);
}

void TimerQueue::cancel(Timer& timer) {
  if (timer.queue_ != this) return;
  const std::size_t index = timer.index_;
  timer.queue_ = nullptr;
  Timer* const last = heap_.back();
  heap_.pop_back();
  if (last == &timer) return;  // it was the last one: nothing to fill in
  // The last timer fills the hole, then moves up or down to where its deadline belongs.
  place(index, last);
  if (index > 0 && last->deadline_ < heap_[(index - 1) / 2]->deadline_) {
    sift_up(index);
  } else {
    sift_down(index);
  }
}

void TimerQueue::place(std::size_t index, Timer* timer) {
  heap_[index] = timer;
  timer->index_ = index;
}

void TimerQueue::sift_up(std::size_t index) {
  Timer* const moving = heap_[index];
  while (index > 0) {
    const std::size_t parent = (index - 1) / 2;
    if (!(moving->deadline_ < heap_[parent]->deadline_)) break;
    place(index, heap_[parent]);
    index = parent;
  }
  place(index, moving);
}

void TimerQueue::sift_down(std::size_t index) {
  Timer* const moving = heap_[index];
  const std::size_t size = heap_.size();
  for (;;) {
    std::size_t child = 2 * index + 1;
    if (child >= size) break;
    if (child + 1 < size && heap_[child + 1]->deadline_ < heap_[child]->deadline_) ++child;
    if (!(heap_[child]->deadline_ < moving->deadline_)) break;
    place(index, heap_[child]);
    index = child;
  }
  place(index, moving);
}
