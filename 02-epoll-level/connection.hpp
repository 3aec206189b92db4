#pragma once
// Connection: one client of the echo server.

#include <cstddef>
#include <span>

#include "buffer.hpp"
#include "socket.hpp"

// Backpressure: stop reading from a client that does not read its echo once this much is owed
// to it. Its unsent bytes then stay below this plus one read, however fast it sends.
constexpr std::size_t kMaxOwedBytes = 1 << 20;

// One client. Owns its socket and the bytes owed to it; borrows the loop's read buffer for
// the length of one on_readable() call. The loop asks wants_read(), wants_write() and
// wants_close() after every event and turns the answers into its interest set.
class Connection {
 public:
  explicit Connection(Fd socket) : socket_(std::move(socket)) {}

  int fd() const { return socket_.get(); }

  // The socket is readable: one recv(), whose bytes are echoed at once (the unsent tail of a
  // partial send is kept, in order), or the client's EOF, or its error.
  void on_readable(std::span<char> read_buffer);
  // The socket is writable: send what is owed.
  void on_writable();

  // Read more: the client has not half-closed and is not over the backpressure cap.
  bool wants_read() const { return !peer_closed_ && !broken_ && owed_.size() < kMaxOwedBytes; }
  // Watch for writability only while bytes are owed: an idle socket is always writable.
  bool wants_write() const { return !broken_ && !owed_.empty(); }
  // Done: the connection failed, or the client half-closed and has every byte back.
  bool wants_close() const { return broken_ || (peer_closed_ && owed_.empty()); }

  std::size_t owed_bytes() const { return owed_.size(); }

 private:
  void echo(std::span<const char> bytes);
  std::size_t send_some(std::span<const char> bytes);

  Fd socket_;
  OutputBuffer owed_;         // read from the client, not yet sent back
  bool peer_closed_ = false;  // the client sent EOF (shut down its writing side)
  bool broken_ = false;       // reset or another error: close without flushing
};
