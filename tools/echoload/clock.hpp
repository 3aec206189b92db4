#pragma once
// The one clock echoload reads, and deadlines turned into epoll_wait() timeouts.

#include <algorithm>
#include <chrono>

// Monotonic: a round trip or a deadline is never thrown off when the wall clock is set.
using Clock = std::chrono::steady_clock;

// Milliseconds from now until `deadline`, 0 once it has passed. Rounded up: rounded down, a wait
// would end just before the deadline, and the loop would spin with 0 ms waits until it came.
inline int milliseconds_until(Clock::time_point deadline) {
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - Clock::now());
  return static_cast<int>(std::max<std::chrono::milliseconds::rep>(left.count(), 0));
}
