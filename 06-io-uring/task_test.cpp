#include "task.hpp"

#include <doctest/doctest.h>

#include <coroutine>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

namespace {

// A coroutine that starts at once and stays suspended at its end, so that a test (which is
// not a coroutine) can run a Task to the point where it waits, and see whether it finished.
class Driver {
 public:
  struct promise_type {
    Driver get_return_object() { return Driver(Handle::from_promise(*this)); }
    std::suspend_never initial_suspend() const noexcept { return {}; }
    std::suspend_always final_suspend() const noexcept { return {}; }
    void return_void() const noexcept {}
    void unhandled_exception() { error = std::current_exception(); }
    std::exception_ptr error;
  };
  using Handle = std::coroutine_handle<promise_type>;

  Driver(Driver&& other) noexcept : frame_(std::exchange(other.frame_, {})) {}
  ~Driver() {
    if (frame_) frame_.destroy();
  }
  bool done() const { return frame_.done(); }
  // Destroys the frame now, suspended or not, as a loop shutting down would.
  void destroy() { std::exchange(frame_, {}).destroy(); }

 private:
  explicit Driver(Handle frame) : frame_(frame) {}
  Handle frame_;
};

template <typename T>
Driver drive(Task<T> task, std::optional<T>& out) {
  out = co_await std::move(task);
}

Driver drive(Task<void> task, bool& finished) {
  co_await std::move(task);
  finished = true;
}

// An event a test fires by hand: `co_await event` suspends until fire() resumes the waiter,
// the way the reactor resumes a coroutine waiting for a socket.
class ManualEvent {
 public:
  bool await_ready() const noexcept { return false; }
  void await_suspend(std::coroutine_handle<> waiter) noexcept { waiter_ = waiter; }
  void await_resume() const noexcept {}
  bool waiting() const { return bool(waiter_); }
  void fire() { std::exchange(waiter_, {}).resume(); }

 private:
  std::coroutine_handle<> waiter_;
};

Task<int> forty_two() {
  co_return 42;
}

Task<int> add_one(Task<int> inner) {
  co_return co_await std::move(inner) + 1;
}

Task<std::unique_ptr<std::string>> move_only() {
  co_return std::make_unique<std::string>("moved, not copied");
}

Task<void> fail_with(std::string what) {
  throw std::runtime_error(what);
  co_return;
}

Task<int> rethrow_twice_removed() {
  co_await fail_with("deep");
  co_return 0;
}

// Counts its own destruction, unless it was moved from. Passed by value to a coroutine, it is
// moved into the frame and stays there until the frame itself is destroyed, body finished or
// not: a witness of the frame. (A local of the body would be gone at co_return.)
class Witness {
 public:
  explicit Witness(int& destroyed) : destroyed_(&destroyed) {}
  Witness(Witness&& other) noexcept : destroyed_(std::exchange(other.destroyed_, nullptr)) {}
  ~Witness() {
    if (destroyed_) ++*destroyed_;
  }

 private:
  int* destroyed_;
};

Task<int> wait_then_answer(ManualEvent& event, [[maybe_unused]] Witness witness) {
  co_await event;
  co_return 7;
}

// Awaits a task that waits, then waits itself: the Task of the first co_await is a temporary,
// destroyed (with the inner frame) when that statement ends, as read_some()'s is in an echo.
Task<int> answer_then_wait(ManualEvent& first, ManualEvent& second, int& destroyed) {
  const int answer = co_await wait_then_answer(first, Witness(destroyed));
  co_await second;
  co_return answer + 1;
}

Task<long> sum_of_ones(long count) {
  long sum = 0;
  for (long i = 0; i < count; ++i)
    sum += co_await forty_two() - 41;
  co_return sum;
}

}  // namespace

TEST_CASE("a task delivers its value to the coroutine awaiting it") {
  std::optional<int> result;
  Driver driver = drive(add_one(forty_two()), result);
  CHECK(driver.done());
  CHECK(result == 43);
}

TEST_CASE("a task's value can be move-only") {
  std::optional<std::unique_ptr<std::string>> result;
  Driver driver = drive(move_only(), result);
  REQUIRE(result.has_value());
  CHECK(**result == "moved, not copied");
}

TEST_CASE("a task is lazy: it does not run until awaited") {
  bool ran = false;
  auto body = [&]() -> Task<void> {
    ran = true;
    co_return;
  };
  {
    Task<void> never_awaited = body();
    CHECK_FALSE(ran);
  }  // destroyed unstarted: its frame is freed without running (ASan checks the freeing)
  CHECK_FALSE(ran);
  bool finished = false;
  Driver driver = drive(body(), finished);
  CHECK(ran);
  CHECK(finished);
}

TEST_CASE("an exception leaves the task and is thrown in the awaiting coroutine") {
  auto catcher = [](std::string& caught) -> Task<void> {
    try {
      co_await rethrow_twice_removed();
    } catch (const std::runtime_error& e) {
      caught = e.what();
    }
  };
  std::string caught;
  bool finished = false;
  Driver driver = drive(catcher(caught), finished);
  CHECK(finished);
  CHECK(caught == "deep");
}

TEST_CASE("a task that waits resumes its awaiter when it ends, with the value") {
  ManualEvent event;
  int destroyed = 0;
  std::optional<int> result;
  Driver driver = drive(wait_then_answer(event, Witness(destroyed)), result);
  CHECK_FALSE(driver.done());  // suspended inside the task, on the event
  CHECK(event.waiting());
  event.fire();  // as the reactor would, when the socket is ready
  CHECK(driver.done());
  CHECK(result == 7);
  // The body has ended, but the frame is the Task's, and the Task (a parameter of drive) is
  // still in the driver's frame: the frame goes with the Task, not before, and not never.
  CHECK(destroyed == 0);
  driver.destroy();
  CHECK(destroyed == 1);
}

TEST_CASE("a task that waited resumes an awaiter that itself waited, up a chain of two") {
  ManualEvent first, second;
  int destroyed = 0;
  std::optional<int> result;
  Driver driver = drive(answer_then_wait(first, second, destroyed), result);
  REQUIRE(first.waiting());
  first.fire();           // the inner task ends and resumes the outer one, which waits in its turn
  CHECK(destroyed == 1);  // the inner frame, freed from inside its own final_suspend
  CHECK_FALSE(driver.done());
  REQUIRE(second.waiting());
  second.fire();  // the outer task ends and resumes the driver, which never saw it end at once
  CHECK(driver.done());
  CHECK(result == 8);
}

TEST_CASE("destroying a suspended chain frees every frame in it") {
  ManualEvent event;
  int destroyed = 0;
  std::optional<int> result;
  Driver driver = drive(add_one(wait_then_answer(event, Witness(destroyed))), result);
  REQUIRE(event.waiting());
  // The loop shuts down with this connection still waiting: destroying the outermost frame
  // destroys the Task it holds, whose destructor destroys the inner frame, and so on. A leak
  // here fails under ASan (LeakSanitizer); the witness shows it in every build.
  driver.destroy();
  CHECK(destroyed == 1);
  CHECK_FALSE(result.has_value());
}

TEST_CASE("a million awaits that finish at once run in constant stack") {
  // With symmetric transfer and no guaranteed tail call (g++ at -O0, or under ASan), each of
  // these would nest a frame and a million of them would overflow an 8 MiB stack.
  std::optional<long> result;
  Driver driver = drive(sum_of_ones(1'000'000), result);
  CHECK(driver.done());
  CHECK(result == 1'000'000);
}
