#pragma once
// Task<T>: a lazy coroutine that produces one T (or throws) for the one coroutine awaiting it.
//
// Lab 4 hands you this file with the declarations the rest of the stage uses and no bodies:
// each body stops the program and names itself, so a test run tells you what to write next.
// Replace each not_written_yet(...) call with the real body, and add the members you need
// (the awaiting coroutine's handle, the exception, the value, a stage). docs/04-coroutines.md
// explains every piece: "A task, the textbook way" (the design, handing over by symmetric
// transfer), "This stage's Task: hand over with a bool" (the hand-over these declarations are
// written for, which runs in bounded stack in every build) and "`Task<T>` itself: who owns
// the frame". The unit tests are task_test.cpp: `make test` in your stage's directory.
//
// You may change a return type (the textbook FinalAwaiter::await_suspend returns the handle
// to run next) or add helpers; what the stage's other files use must stay: Task<T> with its
// promise_type, move-only, awaited as `co_await std::move(task)` or `co_await f()`.

#include <coroutine>
#include <cstdio>
#include <cstdlib>
#include <exception>
#include <optional>
#include <utility>

template <typename T = void>
class Task;

namespace task_detail {

// The body of every piece not written yet: says which one on stderr and stops the program.
[[noreturn]] inline void not_written_yet(const char* piece) {
  std::fprintf(stderr,
               "task.hpp: %s is not written yet; docs/04-coroutines.md, \"A task, the textbook"
               " way\" and \"This stage's Task: hand over with a bool\", tell what it must do\n",
               piece);
  std::abort();
}

// What every Task's promise has, whatever T is.
class PromiseBase {
 public:
  // Lazy: the body must not run until the task is awaited (the test "a task is lazy").
  std::suspend_always initial_suspend() const noexcept {
    not_written_yet("PromiseBase::initial_suspend");
  }

  // Where the body ends: hands control back to the coroutine awaiting the task. This
  // stage's way: if the task ended inside the awaiter's await_suspend (it never waited),
  // just note that it is done; if it waited, resume the awaiting coroutine, and touch
  // nothing of this frame afterwards (that resume may destroy it).
  struct FinalAwaiter {
    bool await_ready() const noexcept { not_written_yet("FinalAwaiter::await_ready"); }
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> /*self*/) const noexcept {
      not_written_yet("FinalAwaiter::await_suspend");
    }
    void await_resume() const noexcept { not_written_yet("FinalAwaiter::await_resume"); }
  };
  FinalAwaiter final_suspend() const noexcept { not_written_yet("PromiseBase::final_suspend"); }

  // An exception that leaves the body: keep it, to throw it again in the awaiting coroutine.
  void unhandled_exception() noexcept { not_written_yet("PromiseBase::unhandled_exception"); }
};

template <typename T>
class Promise : public PromiseBase {
 public:
  // The Task the caller of the coroutine gets: it owns this promise's frame.
  Task<T> get_return_object() noexcept;
  // `co_return value;`: keep the value (T need not be default-constructible or copyable).
  template <typename U>
  void return_value(U&& /*value*/) {
    not_written_yet("Promise<T>::return_value");
  }
  // What `co_await task` gives the awaiting coroutine: the value, or the kept exception thrown.
  T result() { not_written_yet("Promise<T>::result"); }
};

template <>
class Promise<void> : public PromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  // `co_return;` or the end of the body.
  void return_void() const noexcept { not_written_yet("Promise<void>::return_void"); }
  // Throws the kept exception, if any.
  void result() const { not_written_yet("Promise<void>::result"); }
};

// What `co_await task` does. This stage's way: await_suspend starts the task with resume()
// and returns false (go on at once) if the task ended before resume() returned, true (stay
// suspended until the task's final_suspend resumes us) if it had to wait.
template <typename T>
class Awaiter {
 public:
  explicit Awaiter(std::coroutine_handle<Promise<T>> /*task*/) noexcept {
    not_written_yet("Awaiter::Awaiter");
  }
  bool await_ready() const noexcept { not_written_yet("Awaiter::await_ready"); }
  bool await_suspend(std::coroutine_handle<> /*awaiting*/) noexcept {
    not_written_yet("Awaiter::await_suspend");
  }
  T await_resume() { not_written_yet("Awaiter::await_resume"); }
};

}  // namespace task_detail

// The result of a coroutine declared `Task<T> f(...)`. Owns the coroutine's frame: destroys
// it with the Task, whether the body has finished or is suspended. Move-only; awaited once.
template <typename T>
class [[nodiscard]] Task {
 public:
  using promise_type = task_detail::Promise<T>;

  // A move takes the frame; the moved-from Task owns nothing.
  Task(Task&& /*other*/) noexcept { task_detail::not_written_yet("Task::Task(Task&&)"); }
  Task& operator=(Task&& /*other*/) noexcept {
    task_detail::not_written_yet("Task::operator=(Task&&)");
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  // Destroys the frame it owns, if any.
  ~Task() { task_detail::not_written_yet("Task::~Task"); }

  // `co_await std::move(task)`: only an rvalue Task can be awaited, once.
  task_detail::Awaiter<T> operator co_await() && noexcept {
    task_detail::not_written_yet("Task::operator co_await");
  }

 private:
  friend promise_type;
  // Made by get_return_object() only, with the frame it will own.
  explicit Task(std::coroutine_handle<promise_type> /*frame*/) noexcept {
    task_detail::not_written_yet("Task::Task(frame)");
  }
};

namespace task_detail {

template <typename T>
Task<T> Promise<T>::get_return_object() noexcept {
  not_written_yet("Promise<T>::get_return_object");
}

inline Task<void> Promise<void>::get_return_object() noexcept {
  not_written_yet("Promise<void>::get_return_object");
}

}  // namespace task_detail
