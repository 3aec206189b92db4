#pragma once
// The echo server, as two coroutines.

#include "connection.hpp"
#include "reactor.hpp"
#include "socket.hpp"
#include "task.hpp"

// Echoes one client until its EOF, then closes it. Every byte read is written back before the
// next read, so a client that does not read its echo is not read either (backpressure).
Task<void> echo(Reactor& reactor, Fd socket);

// Accepts clients for ever, each echoed by a coroutine of its own that the reactor owns.
Task<void> accept_clients(Reactor& reactor, Listener& listener);
