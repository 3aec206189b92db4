// A minimal poll(2) echo server: many clients at once, on one thread.
//
//   poll_minimal [--host IPV4] [--port N]      (defaults 127.0.0.1 and 7000; port 0: any)
//
// Every socket is non-blocking, and one poll() call waits for all of them at once. Chapter 01
// starts here and then hardens it, step by step, into 01-poll/. Left out on purpose: the bytes
// send() does not take are lost, a client that never reads is not slowed down, a half-close
// ends the connection at once, SIGPIPE can end the server, and running out of descriptors or a
// failed listener makes the loop spin.

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <vector>

#include "listen.hpp"  // Options, parse_command_line, listen_on

namespace {

// Reads once from a client that poll() reported and echoes what came; false when the client
// is done (end-of-file or an error), so the caller closes it.
bool echo_once(int client) {
  char buffer[64 * 1024];
  const ssize_t n = recv(client, buffer, sizeof buffer, 0);
  if (n > 0) {
    // What send() does not take now is lost: chapter 01 keeps it as owed bytes.
    (void)send(client, buffer, static_cast<std::size_t>(n), 0);
    return true;
  }
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
  return false;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse_command_line(argc, argv, options)) {
    std::fputs("usage: poll_minimal [--host IPV4] [--port N]\n", stderr);
    return 2;
  }
  const int listener = listen_on(options, SOCK_NONBLOCK);
  if (listener < 0) return 1;
  // The interest set: pollfds[0] is the listener, every later entry one client.
  std::vector<pollfd> pollfds{{listener, POLLIN, 0}};
  for (;;) {
    // 1. Sleep until at least one socket is ready.
    if (poll(pollfds.data(), pollfds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      std::perror("error: poll");
      return 1;
    }
    // 2. Accept every client waiting in the queue; each joins the table with no events yet.
    if (pollfds[0].revents != 0) {
      int client;
      while ((client = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK)) >= 0) {
        pollfds.push_back({client, POLLIN, 0});
      }
    }
    // 3. Serve each ready client, from the last entry to the first: a closed client's slot
    //    takes the last entry, which this walk has already passed.
    for (std::size_t i = pollfds.size(); i-- > 1;) {
      if (pollfds[i].revents != 0 && !echo_once(pollfds[i].fd)) {
        close(pollfds[i].fd);
        pollfds[i] = pollfds.back();
        pollfds.pop_back();
      }
    }
  }
}
