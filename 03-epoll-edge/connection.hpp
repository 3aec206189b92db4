#pragma once
// Connection: one client of the echo server.

#include <cstddef>
#include <span>

#include "buffer.hpp"
#include "socket.hpp"

// Backpressure: stop reading from a client that does not read its echo once this much is owed
// to it. Its unsent bytes then stay below this plus one read, however fast it sends.
constexpr std::size_t kMaxOwedBytes = 1 << 20;

// One client. Owns its socket, the bytes owed to it, and what the kernel last said about the
// socket; borrows the loop's read buffer for the length of one serve() call.
//
// Edge-triggered epoll reports a change once: "bytes arrived", "room in the send buffer". So
// the connection remembers each report (readable, writable) until a recv() or send() shows it
// is used up, and serve() works from that memory instead of from the event.
class Connection {
 public:
  explicit Connection(Fd socket) : socket_(std::move(socket)) {}

  int fd() const { return socket_.get(); }

  // The kernel reported bytes to read. eof_queued: it also reported the client's EOF (or an
  // error). Nothing will wake the loop for it again (a later report woken by something else
  // would carry it, but none may come), so reading goes on until recv() returns it.
  void mark_readable(bool eof_queued);
  // The kernel reported room in the send buffer.
  void mark_writable() { writable_ = true; }

  // One turn: sends what is owed if the socket can take it, then reads while the socket has
  // bytes, echoing each read at once, for at most max_reads recv() calls.
  void serve(std::span<char> read_buffer, int max_reads);
  // Work that no event will announce again: bytes left to read when the budget ran out, or
  // owed bytes with room to send them.
  bool has_work() const { return (readable_ && wants_read()) || (writable_ && wants_write()); }

  // Read more: the client has not half-closed and is not over the backpressure cap.
  bool wants_read() const { return !peer_closed_ && !broken_ && owed_.size() < kMaxOwedBytes; }
  // Bytes are owed.
  bool wants_write() const { return !broken_ && !owed_.empty(); }
  // Done: the connection failed, or the client half-closed and has every byte back.
  bool wants_close() const { return broken_ || (peer_closed_ && owed_.empty()); }

  std::size_t owed_bytes() const { return owed_.size(); }

 private:
  void read_once(std::span<char> read_buffer);
  void echo(std::span<const char> bytes);
  std::size_t send_some(std::span<const char> bytes);

  Fd socket_;
  OutputBuffer owed_;         // read from the client, not yet sent back
  bool readable_ = false;     // reported readable, and no recv() has found it empty since
  bool eof_queued_ = false;   // the EOF or an error was reported: read until recv() says so
  bool writable_ = true;      // no send() has found the send buffer full since the last report
  bool peer_closed_ = false;  // the client sent EOF (shut down its writing side)
  bool broken_ = false;       // reset or another error: close without flushing
};
