#pragma once
// The echo server, as two coroutines.

#include "connection.hpp"
#include "reactor.hpp"
#include "socket.hpp"
#include "task.hpp"

// What the errno of a failed call on one client's socket means for the server.
enum class ClientError {
  kGone,         // the client, or the way to it, is gone: close it quietly, nobody is left to tell
  kOutOfMemory,  // the kernel is short of memory: close this connection, say so, serve the rest
  kUnexpected,   // nothing a client can cause: a bug, which the reactor reports
};
ClientError classify_client_error(int error);

// Echoes one client until its EOF, then closes it. Every byte read is written back before the
// next read, so a client that does not read its echo is not read either (backpressure).
Task<void> echo(Reactor& reactor, Fd socket);

// Accepts clients for ever, each echoed by a coroutine of its own that the reactor owns.
Task<void> accept_clients(Reactor& reactor, Listener& listener);
