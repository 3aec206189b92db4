#include "connection.hpp"

#include <sys/socket.h>

#include <cerrno>

void Connection::on_readable(std::span<char> read_buffer) {
  ssize_t n;
  do {
    n = recv(fd(), read_buffer.data(), read_buffer.size(), 0);
  } while (n < 0 && errno == EINTR);  // a signal arrived before any byte: just ask again
  if (n > 0) {
    echo(read_buffer.first(static_cast<std::size_t>(n)));
  } else if (n == 0) {
    // EOF: the client half-closed. It may still read, so flush what is owed before closing.
    peer_closed_ = true;
  } else if (errno != EAGAIN && errno != EWOULDBLOCK) {
    // ECONNRESET, ETIMEDOUT, ...: the client is gone, and nothing owed can reach it.
    broken_ = true;
  }
  // EAGAIN: readiness was stale (the kernel said readable, then nothing came); wait for the next.
}

void Connection::on_writable() {
  owed_.consume(send_some(owed_.pending()));
}

void Connection::echo(std::span<const char> bytes) {
  if (!owed_.empty()) {
    // Older bytes are still waiting; sending these first would reorder the echo.
    owed_.append(bytes);
    return;
  }
  const std::size_t sent = send_some(bytes);
  if (!broken_) owed_.append(bytes.subspan(sent));
}

// Sends what the socket takes now and returns how many bytes that was (0 when it is full).
std::size_t Connection::send_some(std::span<const char> bytes) {
  for (;;) {
    // MSG_NOSIGNAL: a send() that fails with EPIPE (the client has gone: it reset the
    // connection after half-closing it, or we write after an earlier error) also raises
    // SIGPIPE, whose default action kills the whole server. With the flag, only EPIPE remains.
    const ssize_t n = send(fd(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) return static_cast<std::size_t>(n);
    if (errno == EINTR) continue;
    // EAGAIN: the socket's send buffer is full, keep the bytes. EPIPE, ECONNRESET, ...: the
    // client is gone.
    if (errno != EAGAIN && errno != EWOULDBLOCK) broken_ = true;
    return 0;
  }
}
