#pragma once
// connect_many: opening thousands of client connections without waiting for each in turn.

#include <cstddef>
#include <string>
#include <vector>

#include "socket.hpp"

// The outcome of connect_many. Owns the established sockets.
struct Connections {
  std::vector<Fd> sockets;    // established: non-blocking, close-on-exec, TCP_NODELAY
  std::size_t failures = 0;   // refused, timed out, or no socket to be had
  std::string first_failure;  // e.g. "connect 127.0.0.1:7000: Connection refused"
};

// Opens `count` connections to `server` with non-blocking connect(), a batch at a time, and waits
// until each one is established or has failed. Throws FatalError only when epoll fails.
Connections connect_many(const Endpoint& server, std::size_t count);
