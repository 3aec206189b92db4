#include "client.hpp"

MessageFlow::MessageFlow(std::size_t message_bytes, std::size_t depth)
    : message_bytes_(message_bytes), sent_at_(depth) {
  assert(message_bytes > 0 && depth > 0);
}

void MessageFlow::issue(std::size_t count) {
  issued_ += static_cast<std::uint64_t>(count) * message_bytes_;
  assert(issued_ / message_bytes_ - received_ / message_bytes_ <= sent_at_.size());
}

void MessageFlow::on_sent(std::size_t n, Clock::time_point now) {
  assert(n <= unsent());
  const std::uint64_t before = sent_ / message_bytes_;
  sent_ += n;
  const std::size_t finished = sent_ / message_bytes_ - before;
  for (std::size_t i = 0; i < finished; ++i) {
    assert(in_flight_ < sent_at_.size());
    sent_at_[(oldest_ + in_flight_) % sent_at_.size()] = now;
    ++in_flight_;
  }
}
