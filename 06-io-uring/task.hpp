#pragma once
// Task<T>: a lazy coroutine that produces one T (or throws) for the one coroutine awaiting it.

#include <cassert>
#include <coroutine>
#include <exception>
#include <optional>
#include <utility>

template <typename T = void>
class Task;

namespace task_detail {

// Where a task stands with the coroutine that awaits it. The awaiter starts the task from
// inside its own await_suspend(), and the task then either finishes before that call returns
// (it never had to wait) or suspends (on I/O), to be finished later by whoever resumes it.
enum class Stage {
  kLazy,      // created, not started: a Task does nothing until it is awaited
  kStarting,  // running inside the awaiter's await_suspend(), which is still on the stack
  kWaiting,   // it suspended; the awaiting coroutine is suspended too, until the task ends
  kDone,      // it ended while kStarting: the awaiter lets the awaiting coroutine go on
};

// What every Task's promise has, whatever T is.
class PromiseBase {
 public:
  // Lazy: the body runs only once the task is awaited, so the awaiter is there to take the
  // result, and a Task that is dropped unawaited never runs at all.
  std::suspend_always initial_suspend() const noexcept { return {}; }

  // At the end of the body. The textbook way on is symmetric transfer (return the awaiting
  // coroutine's handle from here), which the standard means to run in bounded stack however
  // many hand-overs follow; but g++ 12 makes it a tail call only at -O2, -O3 or -Os without
  // ASan, and elsewhere a loop of a million awaits that finish at once nests a stack frame
  // per await until the stack overflows. This hand-over runs in bounded stack in every build
  // we make; it depends on who is still on the stack:
  struct FinalAwaiter {
    bool await_ready() const noexcept { return false; }
    template <typename Promise>
    void await_suspend(std::coroutine_handle<Promise> self) const noexcept {
      PromiseBase& promise = self.promise();
      if (promise.stage_ == Stage::kStarting) {
        // Ended without waiting: the awaiter's await_suspend() is below us on the stack, and
        // it will let the awaiting coroutine continue once this returns. Nothing nests.
        promise.stage_ = Stage::kDone;
        return;
      }
      // It waited, so the awaiting coroutine is suspended, and only we know it is time.
      assert(promise.stage_ == Stage::kWaiting);
      // The awaiting coroutine finishes its co_await in there, which destroys this frame (the
      // Task that owns it dies with the co_await) before resume() returns. Legal, since this
      // coroutine is suspended; but after this line nothing may touch the frame: not the
      // promise, not this awaiter, which lives there too.
      promise.continuation_.resume();
    }
    void await_resume() const noexcept {}
  };
  FinalAwaiter final_suspend() const noexcept { return {}; }

  // An exception that leaves the body is kept, and thrown again in the awaiting coroutine.
  void unhandled_exception() noexcept { exception_ = std::current_exception(); }

 protected:
  void rethrow_if_failed() const {
    if (exception_) std::rethrow_exception(exception_);
  }

 private:
  template <typename P>
  friend class Awaiter;

  Stage stage_ = Stage::kLazy;
  std::coroutine_handle<> continuation_;  // the coroutine awaiting this task
  std::exception_ptr exception_;
};

// snippet-begin: promises
template <typename T>
class Promise : public PromiseBase {
 public:
  Task<T> get_return_object() noexcept;
  template <typename U>
  void return_value(U&& value) {
    value_.emplace(std::forward<U>(value));
  }
  T result() {
    rethrow_if_failed();
    return std::move(*value_);
  }

 private:
  std::optional<T> value_;  // optional: T need not be default-constructible
};

template <>
class Promise<void> : public PromiseBase {
 public:
  Task<void> get_return_object() noexcept;
  void return_void() const noexcept {}
  void result() const { rethrow_if_failed(); }
};
// snippet-end: promises

// What `co_await task` does: start the task right here, and suspend only if it has to wait.
template <typename P>
class Awaiter {
 public:
  explicit Awaiter(std::coroutine_handle<P> task) noexcept : task_(task) {}

  bool await_ready() const noexcept { return false; }

  // Returns false to go on at once (the task has ended), true to stay suspended until the
  // task's final_suspend() resumes us. Returning false needs no resume() call, so a loop of
  // awaits that all end at once runs in constant stack, in every build mode.
  bool await_suspend(std::coroutine_handle<> awaiting) noexcept {
    PromiseBase& promise = task_.promise();
    assert(promise.stage_ == Stage::kLazy && "a Task is awaited once");
    promise.continuation_ = awaiting;
    promise.stage_ = Stage::kStarting;
    task_.resume();  // runs the body up to its end or its first wait
    if (promise.stage_ == Stage::kDone) return false;
    promise.stage_ = Stage::kWaiting;
    return true;
  }

  decltype(auto) await_resume() { return task_.promise().result(); }

 private:
  std::coroutine_handle<P> task_;
};

}  // namespace task_detail

// The result of a coroutine declared `Task<T> f(...)`. Owns the coroutine's frame: the frame
// is destroyed with the Task, whether the body has finished or is suspended (destroying it
// runs the destructors of the body's locals, as leaving a scope would). Move-only, and
// awaited at most once: `T value = co_await f();` or `co_await std::move(task);`. For one
// thread: nothing here is atomic, so a task is made, awaited, resumed and destroyed by the
// thread of the loop that runs it, and by no other.
template <typename T>
class [[nodiscard]] Task {
 public:
  using promise_type = task_detail::Promise<T>;

  Task(Task&& other) noexcept : frame_(std::exchange(other.frame_, {})) {}
  Task& operator=(Task&& other) noexcept {
    if (this != &other) {
      if (frame_) frame_.destroy();
      frame_ = std::exchange(other.frame_, {});
    }
    return *this;
  }
  Task(const Task&) = delete;
  Task& operator=(const Task&) = delete;
  ~Task() {
    if (frame_) frame_.destroy();
  }

  task_detail::Awaiter<promise_type> operator co_await() && noexcept {
    assert(frame_ && "co_await on a moved-from Task");
    return task_detail::Awaiter<promise_type>(frame_);
  }

 private:
  friend promise_type;
  explicit Task(std::coroutine_handle<promise_type> frame) noexcept : frame_(frame) {}

  std::coroutine_handle<promise_type> frame_;
};

namespace task_detail {

template <typename T>
Task<T> Promise<T>::get_return_object() noexcept {
  return Task<T>(std::coroutine_handle<Promise<T>>::from_promise(*this));
}

inline Task<void> Promise<void>::get_return_object() noexcept {
  return Task<void>(std::coroutine_handle<Promise<void>>::from_promise(*this));
}

}  // namespace task_detail
