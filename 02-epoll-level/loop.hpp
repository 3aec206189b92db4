#pragma once
// Loop: the level-triggered epoll(7) readiness loop.

#include <sys/epoll.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "connection.hpp"
#include "socket.hpp"

// What the loop keeps per client: the connection, the events the kernel watches for it, and
// whether it has been closed. epoll hands back a pointer to this with every event.
struct Client {
  explicit Client(Fd socket) : conn(std::move(socket)) {}
  Connection conn;
  std::uint32_t interest = 0;  // the events registered with epoll_ctl, as the kernel has them
  bool closed = false;         // closed earlier in this batch: ignore its remaining events
};

// The event loop. Owns the listening socket, every client and a spare descriptor.
// The interest set lives in the kernel: a client is registered once, and changed only when
// what we wait for changes. Each round, epoll_wait returns the sockets that are ready and
// nothing else, so a round costs the same with ten idle connections or ten thousand.
class Loop {
 public:
  explicit Loop(Fd listener);
  // Serves clients until a fatal error, which it throws as FatalError.
  [[noreturn]] void run();

  // One round, for run() and the unit tests: waits up to timeout_ms (-1: no limit) and serves
  // the events that came.
  void run_once(int timeout_ms);
  // Serves one batch of events, as epoll_wait returned them.
  void dispatch(std::span<const epoll_event> events);
  int epoll_fd() const { return epoll_.get(); }
  // Counted, not kept: only the tests ask, and a counter would be one more thing to keep right.
  std::size_t client_count() const {
    return static_cast<std::size_t>(std::count_if(
        clients_.begin(), clients_.end(), [](const auto& client) { return client != nullptr; }));
  }

 private:
  void accept_ready();
  void add_client(Fd socket);
  void shed_one_client();
  void pause_accepting();
  void resume_accepting_if_due();
  // Paused means the listener is registered with no events until accept_resumes_at_.
  bool accept_paused() const { return listener_interest_ == 0; }
  void on_client_event(Client& client, std::uint32_t events);
  void update_interest(Client& client);
  void close_client(Client& client);
  int wait_timeout_ms() const;

  Fd listener_;
  Fd spare_;  // held in reserve; released to accept and close one client when out of descriptors
  Fd epoll_;
  std::vector<epoll_event> events_;  // reused by every epoll_wait, so a round allocates nothing
  // Every client, indexed by its descriptor (a small integer the kernel hands out lowest
  // first), so the loop owns them without a search. epoll refers to them by pointer.
  std::vector<std::unique_ptr<Client>> clients_;
  // Clients closed during the current batch. They are freed after it: a later event of the
  // same batch may still point at one of them.
  std::vector<std::unique_ptr<Client>> closed_;
  std::vector<char> read_buffer_;  // one buffer for every recv(): connections hold only owed bytes
  // Our copy of the listener's registration, so that pausing is read from what the kernel has.
  std::uint32_t listener_interest_ = EPOLLIN;
  std::chrono::steady_clock::time_point accept_resumes_at_;
};
