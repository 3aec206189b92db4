#pragma once
// Reactor: edge-triggered epoll that resumes coroutines instead of calling handlers.

#include <sys/epoll.h>

#include <chrono>
#include <coroutine>
#include <cstddef>
#include <deque>
#include <exception>
#include <list>
#include <span>
#include <vector>

#include "socket.hpp"
#include "task.hpp"

// What the reactor knows about one registered descriptor: what the kernel reported and no
// system call has used up yet (edge triggering reports each change once, as in stage 3), and
// the coroutine waiting for each direction, if any. epoll hands back a pointer to it.
struct Watch {
  bool readable = false;           // reported readable, and no recv() has found it empty since
  bool eof_queued = false;         // the EOF or an error was reported: read until recv() says so
  bool writable = true;            // no send() has found the send buffer full since the last report
  std::coroutine_handle<> reader;  // suspended until readable
  std::coroutine_handle<> writer;  // suspended until writable
};

// Bytes asked for per recv(); one buffer for the whole reactor, so its size costs nothing
// per connection.
constexpr std::size_t kReadBufferSize = 64 * 1024;

// One thread's event loop. Two rules make it safe to resume a coroutine from an event, and the
// code below keeps both:
//  1. A round records every event of its batch before it resumes anything: note_event() only
//     sets flags and queues the coroutine waiting for them. So no coroutine can close a socket
//     (and free its Watch) while an event for it is still in the batch.
//  2. A coroutine waiting in a Watch or sleeping is resumed only from the ready queue, in
//     run_once(): never from inside note_event(), another coroutine's wake-up, or spawn().
class Reactor {
 public:
  // read_buffer_size: bytes per recv(). The unit tests make it small, to watch the budget at
  // work on a few KiB.
  explicit Reactor(std::size_t read_buffer_size = kReadBufferSize);
  // Destroys every spawned coroutine that has not finished, suspended where it waits: the
  // destructors of its locals close its sockets.
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
  // One round: waits up to timeout_ms for events (not at all while coroutines are ready to
  // run), then resumes the coroutines that can go on. For run() and the unit tests. Throws
  // FatalError, its own (epoll_wait) or one that left a spawned coroutine, at once.
  void run_once(int timeout_ms);

  // Registers fd once, for everything, edge-triggered; watch must stay put until remove().
  void add(int fd, Watch& watch);
  // Deregisters fd, before it is closed (a dup would keep a registration alive).
  void remove(int fd);

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

  // `co_await reactor.sleep_for(d)`: resumed once d has passed (when nothing else holds the
  // loop up). Used to back off when accept() is out of descriptors.
  auto sleep_for(std::chrono::milliseconds delay) {
    struct Sleep {
      Reactor& reactor;
      std::chrono::steady_clock::time_point until;
      bool await_ready() const noexcept { return false; }
      void await_suspend(std::coroutine_handle<> self) {
        reactor.sleepers_.push_back({until, self});
      }
      void await_resume() const noexcept {}
    };
    return Sleep{*this, std::chrono::steady_clock::now() + delay};
  }

  // The one buffer every recv() of this loop reads into: what it holds stays valid until the
  // reading coroutine suspends again.
  std::span<char> read_buffer() { return read_buffer_; }

  int epoll_fd() const { return epoll_.get(); }
  std::size_t spawned_count() const { return spawned_.size(); }

 private:
  class Root;
  void note_event(Watch& watch, std::uint32_t events);
  void wake_sleepers();
  int wait_timeout_ms(int requested) const;
  void retire(std::list<Root>::iterator root);

  Fd epoll_;
  std::vector<epoll_event> events_;            // reused by every epoll_wait
  std::deque<std::coroutine_handle<>> ready_;  // coroutines to resume, in order
  struct Sleeper {
    std::chrono::steady_clock::time_point until;
    std::coroutine_handle<> coroutine;
  };
  std::vector<Sleeper> sleepers_;  // few: only a listener that backs off
  std::vector<char> read_buffer_;
  std::list<Root> spawned_;     // every spawned coroutine not finished yet
  std::exception_ptr failure_;  // a FatalError that left a spawned coroutine, for run_once()
};
