#include "timers.hpp"

#include <doctest/doctest.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <memory>
#include <random>
#include <vector>

namespace {

using std::chrono::milliseconds;

const Clock::time_point t0 = Clock::now();

// A handle that is only compared and recorded, never resumed: the queue is tested on its own.
std::coroutine_handle<> fake_handle(std::uintptr_t n) {
  return std::coroutine_handle<>::from_address(reinterpret_cast<void*>(n * 16));
}

std::uintptr_t number_of(std::coroutine_handle<> h) {
  return reinterpret_cast<std::uintptr_t>(h.address()) / 16;
}

// Expires everything due at `now` and returns the numbers of the handles, in order.
std::vector<std::uintptr_t> expire(TimerQueue& queue, Clock::time_point now) {
  std::vector<std::uintptr_t> resumed;
  queue.expire(now, [&](std::coroutine_handle<> h) { resumed.push_back(number_of(h)); });
  return resumed;
}

}  // namespace

TEST_CASE("timers expire earliest first, and only once their deadline has passed") {
  TimerQueue queue;
  std::array<Timer, 4> timers;
  queue.arm(timers[0], t0 + milliseconds(30), fake_handle(1));
  queue.arm(timers[1], t0 + milliseconds(10), fake_handle(2));
  queue.arm(timers[2], t0 + milliseconds(20), fake_handle(3));
  queue.arm(timers[3], t0 + milliseconds(10), fake_handle(4));
  CHECK(queue.next_deadline() == t0 + milliseconds(10));

  CHECK(expire(queue, t0 + milliseconds(9)).empty());
  const std::vector<std::uintptr_t> first = expire(queue, t0 + milliseconds(20));
  REQUIRE(first.size() == 3);
  CHECK(first[2] == 3);  // the two at 10 ms (in either order), then the one at 20 ms
  CHECK(std::is_permutation(first.begin(), first.begin() + 2,
                            std::array<std::uintptr_t, 2>{2, 4}.begin()));
  CHECK(timers[1].expired());
  CHECK_FALSE(timers[1].armed());
  CHECK(queue.size() == 1);
  CHECK(expire(queue, t0 + milliseconds(100)) == std::vector<std::uintptr_t>{1});
  CHECK(queue.empty());
  CHECK(queue.next_deadline() == kNever);
}

TEST_CASE("a cancelled timer never expires, and the others keep their order") {
  TimerQueue queue;
  std::array<Timer, 5> timers;
  for (std::uintptr_t i = 0; i < timers.size(); ++i)
    queue.arm(timers[i], t0 + milliseconds(10 * (i + 1)), fake_handle(i + 1));
  queue.cancel(timers[0]);  // the earliest
  queue.cancel(timers[3]);  // one in the middle
  queue.cancel(timers[3]);  // twice is harmless
  CHECK_FALSE(timers[0].armed());
  CHECK(expire(queue, t0 + milliseconds(100)) == std::vector<std::uintptr_t>{2, 3, 5});
  CHECK_FALSE(timers[0].expired());
}

TEST_CASE("destroying an armed timer takes it out of the queue") {
  TimerQueue queue;
  Timer kept;
  queue.arm(kept, t0 + milliseconds(20), fake_handle(1));
  {
    Timer dropped;
    queue.arm(dropped, t0 + milliseconds(10), fake_handle(2));
    CHECK(queue.size() == 2);
  }  // as when a frame waiting with a deadline is destroyed
  CHECK(queue.size() == 1);
  CHECK(expire(queue, t0 + milliseconds(100)) == std::vector<std::uintptr_t>{1});
}

TEST_CASE("a timer whose coroutine the event already took does nothing at its deadline") {
  TimerQueue queue;
  Timer lost_race, won_race;
  std::coroutine_handle<> reader = fake_handle(1);  // the owner's slot: the coroutine waits here
  std::coroutine_handle<> writer = fake_handle(2);
  queue.arm(lost_race, t0 + milliseconds(10), fake_handle(1), &reader);
  queue.arm(won_race, t0 + milliseconds(10), fake_handle(2), &writer);
  reader = {};  // the event came first and took the coroutine out of the slot to resume it
  CHECK(expire(queue, t0 + milliseconds(10)) == std::vector<std::uintptr_t>{2});
  CHECK_FALSE(lost_race.expired());
  CHECK(won_race.expired());
  CHECK_FALSE(writer);  // cleared, so that a later event cannot resume it a second time
  CHECK(queue.empty());
}

TEST_CASE("ten thousand timers armed and cancelled at random expire in deadline order") {
  std::mt19937 random(5);
  TimerQueue queue;
  std::vector<std::unique_ptr<Timer>> timers;
  std::vector<Clock::time_point> deadlines;
  for (std::uintptr_t i = 0; i < 10000; ++i) {
    timers.push_back(std::make_unique<Timer>());
    deadlines.push_back(t0 + milliseconds(random() % 1000));
    queue.arm(*timers.back(), deadlines.back(), fake_handle(i + 1));
  }
  std::vector<bool> cancelled(timers.size());
  for (int i = 0; i < 3000; ++i) {
    const std::size_t victim = random() % timers.size();
    queue.cancel(*timers[victim]);
    cancelled[victim] = true;
  }
  const std::vector<std::uintptr_t> order = expire(queue, t0 + milliseconds(1000));
  const auto expected =
      static_cast<std::size_t>(std::count(cancelled.begin(), cancelled.end(), false));
  REQUIRE(order.size() == expected);
  for (std::size_t i = 0; i < order.size(); ++i) {
    const std::size_t index = order[i] - 1;
    CHECK_FALSE(cancelled[index]);
    if (i > 0) CHECK(deadlines[order[i - 1] - 1] <= deadlines[index]);
  }
  CHECK(queue.empty());
}
