#pragma once
// Loop: the poll(2) readiness loop.

#include <poll.h>

#include <chrono>
#include <vector>

#include "connection.hpp"
#include "socket.hpp"

// The event loop. Owns the listening socket, every connection and a spare descriptor.
// Each round it hands the kernel the whole interest set (one pollfd per socket), waits, then
// serves the sockets that are ready. The cost of a round grows with the number of
// connections, ready or not: that is what the next stage fixes.
class Loop {
 public:
  explicit Loop(Fd listener);
  // Serves clients until a fatal error, which it throws as FatalError.
  [[noreturn]] void run();

 private:
  void accept_ready();
  void add_client(Fd socket);
  void shed_one_client();
  void pause_accepting();
  void resume_accepting_if_due();
  // Paused means the listener is out of the interest set until accept_resumes_at_.
  bool accept_paused() const { return pollfds_[kListenerSlot].events == 0; }
  void on_client_event(std::size_t index, short revents);
  void update_interest(std::size_t index);
  void close_client(std::size_t index);
  int poll_timeout_ms() const;

  static constexpr std::size_t kListenerSlot = 0;

  Fd listener_;
  Fd spare_;  // held in reserve; released to accept and close one client when out of descriptors
  // pollfds_[0] is the listener; pollfds_[i + 1] watches connections_[i].
  std::vector<pollfd> pollfds_;
  std::vector<Connection> connections_;
  std::vector<char> read_buffer_;  // one buffer for every recv(): connections hold only owed bytes
  std::chrono::steady_clock::time_point accept_resumes_at_;
};
