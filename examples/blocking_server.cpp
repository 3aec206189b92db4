// A blocking echo server that serves one client at a time.
//
//   blocking_server [--host IPV4] [--port N]      (defaults 127.0.0.1 and 7000; port 0: any)
//
// The introduction's seed: accept a client, echo what it sends until it closes, then accept
// the next. Every call waits, so while one client is connected the next ones wait in the
// kernel's accept queue. Most error handling is left out on purpose: chapter 01 adds it.

#include <sys/socket.h>
#include <unistd.h>

#include <cstdio>

#include "listen.hpp"  // Options, parse_command_line, listen_on

namespace {

// Writes all `n` bytes. A blocking write waits for room, but a signal can still cut it short.
bool write_all(int fd, const char* data, ssize_t n) {
  while (n > 0) {
    const ssize_t sent = write(fd, data, static_cast<std::size_t>(n));
    if (sent <= 0) return false;
    data += sent;
    n -= sent;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse_command_line(argc, argv, options)) {
    std::fputs("usage: blocking_server [--host IPV4] [--port N]\n", stderr);
    return 2;
  }
  const int listener = listen_on(options, 0);
  if (listener < 0) return 1;
  for (;;) {
    const int client = accept(listener, nullptr, nullptr);  // waits for a client
    if (client < 0) continue;
    char buffer[4096];
    ssize_t n;
    while ((n = read(client, buffer, sizeof buffer)) > 0) {  // waits for this client's bytes
      if (!write_all(client, buffer, n)) break;              // waits until they all fit
    }
    close(client);  // at end-of-file or an error; then the next client
  }
}
