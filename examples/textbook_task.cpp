// The textbook lazy Task<T>, handing over by symmetric transfer: await_suspend returns the
// handle of the coroutine to run next, and the compiler resumes it in place of the one that
// suspended. Chapter 04 shows this file whole, next to the stage's Task, which hands over with
// a bool instead.
//
//   g++ -std=c++20 -O2 -Wall -Wextra -Wpedantic -Werror examples/textbook_task.cpp -o textbook_task
//
// (-O2: at -O0 g++ does not make the hand-over a tail call, and the program says so.)
//
// It checks itself: a value and an exception travel through a task, and a million awaits that
// finish at once run one after another. Exit 0 when all of that holds; otherwise a message on
// stderr and exit 1. The million awaits run in bounded stack only where the compiler makes each
// hand-over a tail call, so the program first measures the stack over a short chain, and says
// so instead of overflowing when this build does not.

#include <coroutine>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <exception>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>

template <typename T>
class [[nodiscard]] Task {
 public:
  struct promise_type;
  using Handle = std::coroutine_handle<promise_type>;

  struct promise_type {
    std::coroutine_handle<> continuation;  // the coroutine awaiting this task
    std::optional<T> value;
    std::exception_ptr exception;

    Task get_return_object() noexcept { return Task(Handle::from_promise(*this)); }
    // Lazy: the body starts only when the task is awaited, so continuation is set by then.
    std::suspend_always initial_suspend() noexcept { return {}; }
    // At the end: run the awaiting coroutine next. This frame stays suspended at its final
    // point; the Task that owns it destroys it.
    struct FinalAwaiter {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(Handle self) noexcept {
        return self.promise().continuation;
      }
      void await_resume() noexcept {}
    };
    FinalAwaiter final_suspend() noexcept { return {}; }
    template <typename U>
    void return_value(U&& result) {
      value.emplace(std::forward<U>(result));
    }
    void unhandled_exception() noexcept { exception = std::current_exception(); }
  };

  Task(Task&& other) noexcept : frame_(std::exchange(other.frame_, {})) {}
  Task& operator=(Task&&) = delete;
  ~Task() {
    if (frame_) frame_.destroy();
  }

  // `co_await task`: remember who awaits, then run the task next.
  auto operator co_await() && noexcept {
    struct Awaiter {
      Handle task;
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<> awaiting) noexcept {
        task.promise().continuation = awaiting;
        return task;
      }
      T await_resume() {
        if (task.promise().exception) std::rethrow_exception(task.promise().exception);
        return std::move(*task.promise().value);
      }
    };
    return Awaiter{frame_};
  }

  // For main(), which cannot co_await: runs the task to its end and returns its result. When
  // the task ends, its FinalAwaiter returns noop_coroutine(), and resuming that returns here.
  // Every task in this file ends without waiting for anything, so one resume() is enough.
  T run() && {
    frame_.promise().continuation = std::noop_coroutine();
    frame_.resume();
    if (!frame_.done()) throw std::logic_error("run(): the task is waiting for something");
    if (frame_.promise().exception) std::rethrow_exception(frame_.promise().exception);
    return std::move(*frame_.promise().value);
  }

 private:
  explicit Task(Handle frame) noexcept : frame_(frame) {}
  Handle frame_;
};

// --- what main() runs ------------------------------------------------------------------------

// Where the stack is now: the address of this function's own stack frame.
[[gnu::noinline]] std::uintptr_t stack_position() {
  return reinterpret_cast<std::uintptr_t>(__builtin_frame_address(0));
}

std::uintptr_t lowest = UINTPTR_MAX;  // the deepest stack_position() seen in one()
std::uintptr_t highest = 0;

Task<int> one() {
  const std::uintptr_t here = stack_position();
  if (here < lowest) lowest = here;
  if (here > highest) highest = here;
  co_return 1;
}

// count awaits in a row, each of a task that ends at once.
Task<long> sum_of_ones(long count) {
  long total = 0;
  for (long i = 0; i < count; ++i)
    total += co_await one();
  co_return total;
}

Task<int> answer() {
  co_return 42;
}

Task<int> twice_the_answer() {
  co_return 2 * co_await answer();
}

Task<int> fails() {
  throw std::runtime_error("thrown in the child");
  co_return 0;  // never reached; makes this a coroutine
}

Task<std::string> catches() {
  try {
    co_await fails();
  } catch (const std::runtime_error& e) {
    co_return std::string("caught: ") + e.what();
  }
  co_return "nothing was thrown";
}

int failed(const char* what) {
  std::fprintf(stderr, "textbook_task: %s\n", what);
  return 1;
}

int main() {
  if (twice_the_answer().run() != 84) return failed("a value was lost on the way up");
  if (catches().run() != "caught: thrown in the child")
    return failed("the exception did not reach the awaiting coroutine");

  // A short chain first, which fits on any stack: does each await nest a stack frame?
  constexpr long kShort = 10'000;
  if (sum_of_ones(kShort).run() != kShort) return failed("the short chain lost a value");
  const std::uintptr_t growth = highest - lowest;
  if (growth > 64 * 1024) {
    std::fprintf(stderr,
                 "textbook_task: the stack grew by %zu bytes over %ld awaits (%zu per await): "
                 "this build does not make the hand-over a tail call, and a million awaits "
                 "would overflow the stack\n",
                 static_cast<std::size_t>(growth), kShort,
                 static_cast<std::size_t>(growth / kShort));
    return 1;
  }
  constexpr long kLong = 1'000'000;
  if (sum_of_ones(kLong).run() != kLong) return failed("the long chain lost a value");
  std::printf("%ld awaits in a row: the stack grew by %zu bytes\n", kLong,
              static_cast<std::size_t>(highest - lowest));
  return 0;
}
