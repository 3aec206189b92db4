#include "buffer.hpp"

#include <cassert>

void OutputBuffer::append(std::span<const char> bytes) {
  // Drop the sent prefix once it is at least half the buffer. Each byte is then moved at most
  // once per byte sent before it, so appends stay amortised O(n) even when every send is partial.
  if (sent_ > 0 && sent_ >= bytes_.size() / 2) {
    bytes_.erase(bytes_.begin(), bytes_.begin() + static_cast<std::ptrdiff_t>(sent_));
    sent_ = 0;
  }
  bytes_.insert(bytes_.end(), bytes.begin(), bytes.end());
}

std::span<const char> OutputBuffer::pending() const {
  return std::span<const char>(bytes_).subspan(sent_);
}

void OutputBuffer::consume(std::size_t n) {
  assert(n <= size() && "consumed more bytes than were owed");
  sent_ += n;
  if (sent_ == bytes_.size()) {
    // Everything owed has been sent: give the memory back, not just the bytes.
    std::vector<char>().swap(bytes_);
    sent_ = 0;
  }
}
