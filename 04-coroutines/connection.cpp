#include "connection.hpp"

#include <sys/socket.h>

#include <cerrno>

void Connection::mark_readable(bool eof_queued) {
  readable_ = true;
  if (eof_queued) eof_queued_ = true;
}

void Connection::serve(std::span<char> read_buffer, int max_reads) {
  // Owed bytes first: they are older than anything still to be read.
  if (writable_ && wants_write()) owed_.consume(send_some(owed_.pending()));
  // Over the cap, reading stops but readable_ stays set: once the client reads its echo and
  // the owed bytes drain, the next turn reads on with no new event (none would come for bytes
  // that arrived long ago).
  for (int reads = 0; reads < max_reads && readable_ && wants_read(); ++reads) {
    read_once(read_buffer);
  }
}

void Connection::read_once(std::span<char> read_buffer) {
  ssize_t n;
  do {
    n = recv(fd(), read_buffer.data(), read_buffer.size(), 0);
  } while (n < 0 && errno == EINTR);  // a signal arrived before any byte: just ask again
  if (n > 0) {
    const auto size = static_cast<std::size_t>(n);
    // Fewer bytes than asked for: the receive queue was empty when recv() returned, and a byte
    // that arrives later is a new edge (epoll(7) allows this shortcut for stream sockets), so
    // the recv() that would only say EAGAIN is saved. Not when the EOF was reported: it waits
    // behind these bytes, and no new event will announce it.
    if (size < read_buffer.size() && !eof_queued_) readable_ = false;
    echo(read_buffer.first(size));
  } else if (n == 0) {
    // EOF: the client half-closed. It may still read, so flush what is owed before closing.
    peer_closed_ = true;
  } else if (errno == EAGAIN || errno == EWOULDBLOCK) {
    readable_ = false;  // drained: nothing more until the next edge
  } else {
    // ECONNRESET, ETIMEDOUT, ...: the client is gone, and nothing owed can reach it.
    broken_ = true;
  }
}

void Connection::echo(std::span<const char> bytes) {
  if (!owed_.empty()) {
    // Older bytes are still waiting; sending these first would reorder the echo. (This also
    // covers a full send buffer: a send() that falls short leaves bytes owed.)
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
    if (n >= 0) {
      // Short: the send buffer is full. The kernel reports EPOLLOUT once room frees up.
      if (static_cast<std::size_t>(n) < bytes.size()) writable_ = false;
      return static_cast<std::size_t>(n);
    }
    if (errno == EINTR) continue;
    // EAGAIN: the send buffer is full, keep the bytes. EPIPE, ECONNRESET, ...: the client is gone.
    if (errno == EAGAIN || errno == EWOULDBLOCK) {
      writable_ = false;
    } else {
      broken_ = true;
    }
    return 0;
  }
}
