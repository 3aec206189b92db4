#include "reactor.hpp"

#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cassert>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>

#include "log.hpp"

namespace {

// Requests prepared per round before the queue is handed over early (a burst of accepts and
// sends); and completions the kernel can hold before it must keep them aside. Multishot
// requests post many completions each, so the completion queue is the larger.
constexpr unsigned kSubmissionEntries = 1024;
constexpr unsigned kCompletionEntries = 16384;

// What our requests ask of the kernel, and the first Linux that has it: IORING_SETUP_DEFER_TASKRUN
// 6.1, SINGLE_ISSUER and multishot receive 6.0, provided buffer rings, multishot accept and
// IORING_ASYNC_CANCEL_ANY 5.19, IOSQE_CQE_SKIP_SUCCESS 5.17, a timeout in io_uring_enter 5.11.
constexpr const char* kMinimumKernel = "Linux 6.1";

// io_uring_setup failed with `error`: unavailable where the kernel lacks io_uring or forbids
// it, and the one line main prints says which and what to do.
FatalError setup_failure(int error) {
  const std::string call = std::string("io_uring_setup: ") + std::strerror(error);
  switch (error) {
    case ENOSYS:
      return IoUringUnavailable(call + ": this kernel has no io_uring (stage 6 needs " +
                                kMinimumKernel + " or later); " + kRunStageFive);
    case EPERM:
    case EACCES:
      return IoUringUnavailable(call + ": io_uring is switched off here, by the sysctl " +
                                "kernel.io_uring_disabled or by a seccomp profile (Docker's " +
                                "default blocks it); allow it, or " + kRunStageFive);
    case EINVAL:
      return IoUringUnavailable(call + ": the kernel is older than " + kMinimumKernel +
                                ", which IORING_SETUP_DEFER_TASKRUN needs; " + kRunStageFive);
    default:
      return FatalError(call);
  }
}

}  // namespace

Reactor::Ring::Ring() {
  // How make test checks the path a machine without io_uring takes, on one that has it.
  if (const char* forced = std::getenv("NO_IO_URING"); forced && *forced) {
    throw IoUringUnavailable(std::string("NO_IO_URING is set in the environment (unset it to ") +
                             "use io_uring); " + kRunStageFive);
  }
  io_uring_params params{};
  // One thread submits (SINGLE_ISSUER), so the kernel can skip locking for it; the work that
  // finishes requests runs when that thread asks for completions (DEFER_TASKRUN), not whenever
  // an interrupt leaves it, so nothing interrupts the loop. Disabled until that thread enables
  // it (R_DISABLED): the loop's thread is not the one that makes the Reactor.
  params.flags = IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED |
                 IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
  params.cq_entries = kCompletionEntries;
  if (const int error = -io_uring_queue_init_params(kSubmissionEntries, &uring, &params)) {
    throw setup_failure(error);
  }
  // NODROP: a full completion queue keeps what overflows instead of losing it. EXT_ARG: a wait
  // with a timeout in the same io_uring_enter. Both older than anything above.
  if (!(params.features & IORING_FEAT_NODROP) || !(params.features & IORING_FEAT_EXT_ARG)) {
    io_uring_queue_exit(&uring);
    throw IoUringUnavailable(std::string("the kernel is older than ") + kMinimumKernel + "; " +
                             kRunStageFive);
  }
}

Reactor::Ring::~Ring() {
  io_uring_queue_exit(&uring);
}

// The root of a spawned coroutine: a coroutine of its own that awaits the task, prints what
// escapes it (a FatalError it hands to the reactor instead), and at its end takes itself off
// the reactor's list and frees its frame.
class Reactor::Root {
 public:
  struct promise_type {
    Root get_return_object() { return Root(Frame::from_promise(*this)); }
    // Started by the reactor's queue, once spawn() has put it on the list.
    std::suspend_always initial_suspend() const noexcept { return {}; }
    auto final_suspend() const noexcept {
      struct Retire {
        bool await_ready() const noexcept { return false; }
        // Suspended at its end, a coroutine may be destroyed, here included: nothing of
        // this frame is touched after retire() returns.
        void await_suspend(std::coroutine_handle<promise_type> self) const noexcept {
          self.promise().reactor->retire(self.promise().self);
        }
        void await_resume() const noexcept {}
      };
      return Retire{};
    }
    void return_void() const noexcept {}
    // Only a FatalError gets this far (run() catches the rest): the loop's to handle.
    void unhandled_exception() const noexcept { reactor->failure_ = std::current_exception(); }

    Reactor* reactor = nullptr;
    std::list<Root>::iterator self;  // its place in reactor->spawned_
  };
  using Frame = std::coroutine_handle<promise_type>;

  static Root run(Task<void> task) {
    try {
      co_await std::move(task);
    } catch (const FatalError&) {
      throw;  // not this coroutine's failure but the loop's: run_once() throws it on
    } catch (const std::exception& e) {
      log(LogLevel::kError, std::string("a spawned coroutine failed: ") + e.what());
    } catch (...) {
      log(LogLevel::kError, "a spawned coroutine failed with an unknown exception");
    }
  }

  Root(Root&& other) noexcept : frame_(std::exchange(other.frame_, {})) {}
  Root(const Root&) = delete;
  ~Root() {
    if (frame_) frame_.destroy();
  }
  Frame frame() const { return frame_; }
  Frame release() { return std::exchange(frame_, {}); }

 private:
  explicit Root(Frame frame) : frame_(frame) {}
  Frame frame_;
};

// Buffer group 0: each loop has its own ring, so one group each is enough.
Reactor::Reactor(std::size_t buffer_size, unsigned buffer_count)
    : buffers_(ring_.uring, 0, buffer_count, buffer_size) {}

Reactor::~Reactor() {
  destroy_all();
  quiesce();
}

void Reactor::destroy_all() {
  // Nothing is resumed from here on; then every unfinished coroutine is destroyed where it
  // waits, its locals (the sockets and timers among them) with it. Their requests in flight
  // are abandoned, not finished: quiesce() waits for those.
  ready_.clear();
  spawned_.clear();
}

void Reactor::spawn(Task<void> task) {
  spawned_.push_front(Root::run(std::move(task)));
  const auto root = spawned_.begin();
  root->frame().promise().reactor = this;
  root->frame().promise().self = root;
  schedule(root->frame());
}

void Reactor::retire(std::list<Root>::iterator root) {
  const Root::Frame frame = root->release();
  spawned_.erase(root);
  frame.destroy();
}

void Reactor::run() {
  while (!spawned_.empty())
    run_once(-1);
}

void Reactor::run_once(int timeout_ms) {
  if (!bound_) {
    // The first round: from now on only this thread may submit (SINGLE_ISSUER).
    // liburing 2.3 declares io_uring_enable_rings() but does not export it: the system call.
    if (syscall(__NR_io_uring_register, ring_.uring.ring_fd, IORING_REGISTER_ENABLE_RINGS, nullptr,
                0) != 0) {
      throw FatalError(std::string("io_uring_register ENABLE_RINGS: ") + std::strerror(errno));
    }
    bound_ = true;
  }
  // Receives that found the ring dry ask again, one per buffer back in it. Here, not when a
  // buffer comes back: every buffer the last batch took is counted by now, and their requests
  // go out in this round's enter either way.
  while (!starved_.empty() && buffers_.lent() < buffers_.count()) {
    BufferWaiter* const waiter = starved_.front();
    starved_.pop_front();
    waiter->on_buffer_returned();
  }
  // Coroutines ready to run: collect completions, but do not sleep.
  enter(ready_.empty() ? wait_timeout_ms(timeout_ms) : 0);
  // Completions only record what the kernel did and queue the coroutines waiting for it: none
  // runs, so none can destroy an operation, until the whole batch has been read.
  reap();
  // No clock read per round unless some wait has a deadline: with no idle timeout, the queue
  // is empty except while accept backs off.
  if (!timers_.empty()) {
    timers_.expire(Clock::now(), [this](std::coroutine_handle<> due) { schedule(due); });
  }
  // Resume what was queued before this point, in order. What these queue (a yield, a task
  // that spawns one) runs in the next round, after the next look for completions.
  for (std::size_t n = ready_.size(); n > 0; --n) {
    const std::coroutine_handle<> next = ready_.front();
    ready_.pop_front();
    next.resume();
    // A coroutine that ended with a FatalError ends the loop, not only itself.
    if (failure_) std::rethrow_exception(std::exchange(failure_, nullptr));
  }
}

// One io_uring_enter: hands the kernel every request prepared since the last round and, in the
// same call, waits until at least one completion is there or timeout_ms has passed (0: only
// collects what is done; -1: no timeout).
void Reactor::enter(int timeout_ms) {
  int result;
  if (timeout_ms == 0) {
    result = io_uring_submit_and_get_events(&ring_.uring);
  } else if (timeout_ms < 0) {
    result = io_uring_submit_and_wait(&ring_.uring, 1);
  } else {
    __kernel_timespec timeout{};
    timeout.tv_sec = timeout_ms / 1000;
    timeout.tv_nsec = static_cast<long long>(timeout_ms % 1000) * 1'000'000;
    io_uring_cqe* first = nullptr;
    result = io_uring_submit_and_wait_timeout(&ring_.uring, &first, 1, &timeout, nullptr);
  }
  // ETIME: the timeout passed first. EINTR: a signal (a debugger's, say). EBUSY: completions
  // that overflowed wait in the kernel until we make room, which reap() does next.
  if (result >= 0 || result == -ETIME || result == -EINTR || result == -EBUSY) return;
  throw FatalError(std::string("io_uring_enter: ") + std::strerror(-result));
}

void Reactor::reap() {
  unsigned head;
  unsigned seen = 0;
  io_uring_cqe* cqe;
  io_uring_for_each_cqe(&ring_.uring, head, cqe) {
    complete(*cqe);
    ++seen;
  }
  io_uring_cq_advance(&ring_.uring, seen);
}

// A completion's user_data names its request: the slot in slots_, and which use of that slot
// (the generation, raised each time the slot is freed). A completion that names a slot that is
// free or used again since is stale: its request was forgotten while the kernel still had it.
void Reactor::complete(const io_uring_cqe& cqe) {
  if (cqe.user_data == 0) return;  // a cancel's own failure (nothing left to cancel, say)
  const auto index = static_cast<std::uint32_t>(cqe.user_data >> 32);
  const auto generation = static_cast<std::uint32_t>(cqe.user_data);
  const bool has_buffer = cqe.flags & IORING_CQE_F_BUFFER;
  const auto buffer = static_cast<std::uint16_t>(cqe.flags >> IORING_CQE_BUFFER_SHIFT);
  if (has_buffer) buffers_.took(buffer);
  if (index >= slots_.size() || !slots_[index].busy || slots_[index].generation != generation) {
    // A bug in this file, never the peer's doing: said, counted (the tests read the count),
    // and its buffer kept in use.
    if (++stale_completions_ == 1) log(LogLevel::kError, "io_uring: a stale completion");
    if (has_buffer) give_back(buffer);
    return;
  }
  Operation* const owner = slots_[index].owner;
  // An abandoned accept's clients: nobody will serve them.
  if (!owner && cqe.res >= 0 && leftovers_.at(index).closes_results) Fd{cqe.res}.reset();
  // The last completion of a request (a multishot one posts several, with F_MORE): the slot is
  // free again before the owner hears of it, so that it may ask again at once.
  if (!(cqe.flags & IORING_CQE_F_MORE)) {
    if (owner) owner->token_ = 0;
    release(index);
  }
  if (owner) {
    owner->on_completion(cqe.res, cqe.flags);
  } else if (has_buffer) {
    give_back(buffer);  // abandoned: nobody will read what it received
  }
}

io_uring_sqe* Reactor::next_sqe() {
  if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_.uring)) return sqe;
  // The submission queue is full (a burst in one round): hand it to the kernel now.
  if (bound_) io_uring_submit(&ring_.uring);
  if (io_uring_sqe* sqe = io_uring_get_sqe(&ring_.uring)) return sqe;
  throw FatalError("io_uring: the submission queue is full");
}

io_uring_sqe* Reactor::prepare(Operation& op) {
  assert(!op.in_flight() && "an operation is in flight once at a time");
  io_uring_sqe* const sqe = next_sqe();
  std::uint32_t index;
  if (free_slots_.empty()) {
    index = static_cast<std::uint32_t>(slots_.size());
    slots_.emplace_back().generation = 1;  // never 0, so that no token is 0
  } else {
    index = free_slots_.back();
    free_slots_.pop_back();
  }
  Slot& slot = slots_[index];
  slot.owner = &op;
  slot.busy = true;
  ++in_flight_;
  op.token_ = (std::uint64_t{index} << 32) | slot.generation;
  io_uring_sqe_set_data64(sqe, op.token_);
  return sqe;
}

void Reactor::release(std::uint32_t index) {
  Slot& slot = slots_[index];
  std::optional<std::uint16_t> held;
  if (!slot.owner) {
    const auto abandoned = leftovers_.find(index);
    held = abandoned->second.held_buffer;
    leftovers_.erase(abandoned);
  }
  slot.owner = nullptr;
  slot.busy = false;
  if (++slot.generation == 0) slot.generation = 1;
  free_slots_.push_back(index);
  --in_flight_;
  // Last: giving a buffer back may start a receive, which may take this very slot.
  if (held) give_back(*held);
}

void Reactor::cancel(const Operation& op) {
  assert(op.in_flight());
  io_uring_sqe* const sqe = next_sqe();
  io_uring_prep_cancel64(sqe, op.token_, 0);
  io_uring_sqe_set_data64(sqe, 0);
  // Its own completion only if it fails: the request it cancels completes either way.
  sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
}

void Reactor::abandon(Operation& op, Leftovers leftovers) {
  assert(op.in_flight());
  const auto index = static_cast<std::uint32_t>(op.token_ >> 32);
  Slot& slot = slots_[index];
  slot.owner = nullptr;
  leftovers_[index] = std::move(leftovers);
  cancel(op);
  op.token_ = 0;
}

void Reactor::post_for_test(std::uint64_t user_data) {
  io_uring_sqe* const sqe = next_sqe();
  io_uring_prep_nop(sqe);
  io_uring_sqe_set_data64(sqe, user_data);
}

void Reactor::give_back(std::uint16_t id) {
  buffers_.give_back(id);
}

void Reactor::wait_for_buffer(BufferWaiter& waiter) {
  starved_.push_back(&waiter);
}

void Reactor::stop_waiting_for_buffer(BufferWaiter& waiter) {
  starved_.erase(std::remove(starved_.begin(), starved_.end(), &waiter), starved_.end());
}

void Reactor::quiesce() {
  if (in_flight_ == 0) return;
  if (!bound_) {
    // Never submitted: the kernel holds none of it.
    for (std::uint32_t index = 0; index < slots_.size(); ++index) {
      if (!slots_[index].busy) continue;
      if (slots_[index].owner) slots_[index].owner->token_ = 0;
      release(index);
    }
    return;
  }
  try {
    io_uring_sqe* const sqe = next_sqe();
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, 0);
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    // A cancelled request completes at once; one the kernel is carrying out (a send copying
    // its bytes, say) finishes soon after. Bounded, in case one never does.
    for (int round = 0; in_flight_ > 0 && round < 50; ++round) {
      enter(100);
      reap();
    }
  } catch (const FatalError& e) {
    log(LogLevel::kError, std::string("waiting for the ring's requests to end: ") + e.what());
  }
  if (in_flight_ > 0) {
    // Freeing memory the kernel may still write would corrupt whatever is put there next:
    // better to lose it. Never seen; said loudly if it happens.
    log(LogLevel::kError, std::to_string(in_flight_) + " io_uring requests did not end; " +
                              "their buffers are left allocated");
    buffers_.leak();
    new std::unordered_map<std::uint32_t, Leftovers>(std::move(leftovers_));
  }
}

int Reactor::wait_timeout_ms(int requested) const {
  if (timers_.empty()) return requested;
  // Rounded up: waking a little late is harmless, waking early only to sleep again is not.
  const auto left =
      std::chrono::ceil<std::chrono::milliseconds>(timers_.next_deadline() - Clock::now()).count();
  const int until_next = left > 0 ? static_cast<int>(std::min<long long>(left, 1 << 30)) : 0;
  return requested < 0 ? until_next : std::min(requested, until_next);
}
