#include "server.hpp"

#include <cerrno>
#include <system_error>

namespace {

// The ways a client can be gone: nothing owed can reach it, and there is nobody to tell.
bool client_gone(const std::system_error& e) {
  switch (e.code().value()) {
    case ECONNRESET:
    case EPIPE:
    case ETIMEDOUT:
    case EHOSTUNREACH:
    case ENETUNREACH:
      return true;
    default:
      return false;
  }
}

}  // namespace

Task<void> echo(Reactor& reactor, Fd socket) {
  Connection client(reactor, std::move(socket));
  try {
    for (;;) {
      const std::span<const char> bytes = co_await client.read_some();
      if (bytes.empty()) break;          // EOF: everything read has been echoed
      co_await client.write_all(bytes);  // no more reading until this is all sent
    }
  } catch (const std::system_error& e) {
    if (!client_gone(e)) throw;  // anything else is a bug: the reactor reports it
  }
}  // ~Connection: deregistered and closed

Task<void> accept_clients(Reactor& reactor, Listener& listener) {
  for (;;) {
    reactor.spawn(echo(reactor, co_await listener.accept()));
  }
}
