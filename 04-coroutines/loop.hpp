#pragma once
// Loop: the edge-triggered epoll(7) readiness loop.

#include <sys/epoll.h>

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <memory>
#include <span>
#include <vector>

#include "connection.hpp"
#include "socket.hpp"

// Bytes asked for per recv(). There is one such buffer for the whole loop, so its size costs
// nothing per connection, and 64 KiB moves a bulk transfer in few calls.
constexpr std::size_t kReadBufferSize = 64 * 1024;

// The budgets. Edge triggering says "read (or accept) until EAGAIN", but a client that sends
// as fast as we read would then keep the loop to itself. So one client's turn is at most
// kReadsPerTurn recv() calls (256 KiB), and a round accepts at most kAcceptsPerRound clients;
// what is left waits for the next round, which comes after one turn for every other client.
constexpr int kReadsPerTurn = 4;
constexpr int kAcceptsPerRound = 64;

// What the loop keeps per client: the connection, and whether it is on the ready list.
// epoll hands back a pointer to this with every event.
struct Client {
  explicit Client(Fd socket) : conn(std::move(socket)) {}
  Connection conn;
  bool queued = false;  // on the ready list: it has work that no event will announce again
};

// The event loop. Owns the listening socket, every client and a spare descriptor.
// Each socket is registered once, for everything it will ever be waited for, and never
// changed: the kernel reports each change of readiness once, and the loop keeps the work it
// could not finish in one turn on a ready list, served every round before it waits again.
class Loop {
 public:
  // read_buffer_size: bytes per recv(). The unit tests make it small, to watch the budget at
  // work on a few KiB instead of on more than a socket buffers.
  explicit Loop(Fd listener, std::size_t read_buffer_size = kReadBufferSize);
  // Serves clients until a fatal error, which it throws as FatalError.
  [[noreturn]] void run();

  // One round, for run() and the unit tests: waits up to timeout_ms (-1: no limit) for
  // events, then serves them and the ready list.
  void run_once(int timeout_ms);
  // Serves one batch of events, as epoll_wait returned them, and the ready list.
  void dispatch(std::span<const epoll_event> events);
  int epoll_fd() const { return epoll_.get(); }
  // Counted, not kept: only the tests ask, and a counter would be one more thing to keep right.
  std::size_t client_count() const {
    return static_cast<std::size_t>(std::count_if(
        clients_.begin(), clients_.end(), [](const auto& client) { return client != nullptr; }));
  }
  std::size_t ready_count() const { return ready_.size(); }

 private:
  void accept_ready();
  void add_client(Fd socket);
  void shed_one_client();
  void pause_accepting();
  void resume_accepting_if_due();
  bool accept_paused() const { return accept_paused_; }
  void note_event(Client& client, std::uint32_t events);
  void enqueue(Client& client);
  void serve_ready();
  void close_client(Client& client);
  int wait_timeout_ms() const;

  Fd listener_;
  Fd spare_;  // held in reserve; released to accept and close one client when out of descriptors
  Fd epoll_;
  std::vector<epoll_event> events_;  // reused by every epoll_wait, so a round allocates nothing
  // Every client, indexed by its descriptor (a small integer the kernel hands out lowest
  // first), so the loop owns them without a search. epoll refers to them by pointer.
  std::vector<std::unique_ptr<Client>> clients_;
  // The ready list: clients with work left, in the order they became ready. serving_ holds the
  // round's list while it is served, so that a client can queue itself again for the next.
  std::vector<Client*> ready_;
  std::vector<Client*> serving_;
  std::vector<char> read_buffer_;  // one buffer for every recv(): connections hold only owed bytes
  // The listener's edge: clients may be waiting in the accept queue (no accept() has returned
  // EAGAIN since it was reported).
  bool listener_ready_ = false;
  bool accept_paused_ = false;  // out of descriptors or memory: no accept() until the time below
  std::chrono::steady_clock::time_point accept_resumes_at_;
};
