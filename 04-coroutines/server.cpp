#include "server.hpp"

#include <cerrno>
#include <iostream>
#include <system_error>
#include <utility>

namespace {

// Stage 4 has no log levels, and a shortage of kernel memory hits many connections at once:
// said once, the warning cannot itself flood stderr. Every connection it hits is closed.
void report_out_of_memory(const std::system_error& e) {
  static bool reported = false;  // one thread runs every echo
  if (std::exchange(reported, true)) return;
  std::cerr << "warn: " << e.what()
            << ": the kernel is short of memory; closing the connections this happens to"
               " (said once)\n";
}

}  // namespace

ClientError classify_client_error(int error) {
  switch (error) {
    case ECONNRESET:    // the client reset the connection
    case EPIPE:         // it closed its side for good, and we wrote on
    case ETIMEDOUT:     // it stopped acknowledging: the retransmissions gave up
    case EHOSTUNREACH:  // the network says it cannot be reached any more (an ICMP error, or
    case ENETUNREACH:   // the route or the interface it was reached through is gone)
    case ENETDOWN:
    case EHOSTDOWN:
      return ClientError::kGone;
    case ENOMEM:   // the kernel could not allocate for this connection: it cannot be served now,
    case ENOBUFS:  // and the others may still be
      return ClientError::kOutOfMemory;
    default:
      return ClientError::kUnexpected;
  }
}

Task<void> echo(Reactor& reactor, Fd socket) {
  Connection client(reactor, std::move(socket));
  try {
    for (;;) {
      const std::span<const char> bytes = co_await client.read_some();
      if (bytes.empty()) break;          // EOF: everything read has been echoed
      co_await client.write_all(bytes);  // no more reading until this is all sent
    }
  } catch (const std::system_error& e) {
    const ClientError error = classify_client_error(e.code().value());
    if (error == ClientError::kUnexpected) throw;  // a bug: the reactor reports it
    if (error == ClientError::kOutOfMemory) report_out_of_memory(e);
  }
}  // ~Connection: deregistered and closed

Task<void> accept_clients(Reactor& reactor, Listener& listener) {
  for (;;) {
    reactor.spawn(echo(reactor, co_await listener.accept()));
  }
}
