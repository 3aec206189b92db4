#pragma once
// The bookkeeping of one active connection: which messages are out, and since when.

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <vector>

#include "clock.hpp"
#include "socket.hpp"
#include "stream.hpp"

// The messages of one connection, as offsets in its byte stream: message k is the bytes
// [k * size, (k + 1) * size). Offsets only grow, in this order:
//   received <= sent <= issued
// issued: bytes of the messages we have decided to send; sent: handed to send(); received:
// echoed back and checked. Knows no socket, so the tests can drive it with any chunk sizes.
class MessageFlow {
 public:
  MessageFlow(std::size_t message_bytes, std::size_t depth);

  // Adds `count` messages to send; at most `depth` may be unanswered at a time.
  void issue(std::size_t count);
  // send() took `n` more bytes, and returned at `now`. A message whose last byte is among them
  // starts its round trip now.
  void on_sent(std::size_t n, Clock::time_point now);
  // `n` more echoed bytes arrived at `now` (never more than awaited()). Calls
  // on_complete(round_trip) for each message whose last byte is among them, oldest first, and
  // returns how many that was.
  template <typename OnComplete>
  std::size_t on_received(std::size_t n, Clock::time_point now, OnComplete&& on_complete);

  std::uint64_t sent() const { return sent_; }
  std::uint64_t received() const { return received_; }
  std::uint64_t unsent() const { return issued_ - sent_; }
  std::uint64_t awaited() const { return sent_ - received_; }

 private:
  std::size_t message_bytes_;
  std::uint64_t issued_ = 0;
  std::uint64_t sent_ = 0;
  std::uint64_t received_ = 0;
  // When each message with all its bytes sent, but not all echoed, went out, oldest first: a
  // ring of `depth` slots, since no more messages than that are ever unanswered.
  std::vector<Clock::time_point> sent_at_;
  std::size_t oldest_ = 0;  // slot of the oldest
  std::size_t in_flight_ = 0;
};

template <typename OnComplete>
std::size_t MessageFlow::on_received(std::size_t n, Clock::time_point now,
                                     OnComplete&& on_complete) {
  assert(n <= awaited());
  const std::uint64_t before = received_ / message_bytes_;
  received_ += n;
  const std::size_t completed = received_ / message_bytes_ - before;
  for (std::size_t i = 0; i < completed; ++i) {
    // A message's echo cannot end before its last byte went out, so its send time is here.
    assert(in_flight_ > 0);
    on_complete(now - sent_at_[oldest_]);
    oldest_ = (oldest_ + 1) % sent_at_.size();
    --in_flight_;
  }
  return completed;
}

// One active connection. Owns its socket; its stream borrows the run's pattern.
struct Client {
  Client(Fd socket, std::size_t index, ByteStream stream, MessageFlow flow)
      : socket(std::move(socket)), index(index), stream(stream), flow(std::move(flow)) {}

  Fd socket;                     // empty once the connection is closed
  std::size_t index;             // among the active connections; picks the stream
  ByteStream stream;             // what to send, and what the echo must be
  MessageFlow flow;              // messages out and their send times
  bool watching_writes = false;  // EPOLLOUT is in the interest set
};
