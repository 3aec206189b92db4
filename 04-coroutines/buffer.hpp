#pragma once
// OutputBuffer: the bytes owed to one client.

#include <cstddef>
#include <span>
#include <vector>

// The bytes we read from a client but could not send back yet (the unsent tail of a partial
// write), oldest first. Owns its storage and holds none while nothing is owed, so an idle
// connection costs no heap memory.
class OutputBuffer {
 public:
  // Adds bytes after everything already owed.
  void append(std::span<const char> bytes);
  // The owed bytes, oldest first: what to pass to the next send().
  std::span<const char> pending() const;
  // Forgets the first n bytes of pending(), which send() has accepted.
  void consume(std::size_t n);

  std::size_t size() const { return bytes_.size() - sent_; }
  bool empty() const { return size() == 0; }
  // Heap bytes held, owed or not: for tests and memory accounting.
  std::size_t capacity() const { return bytes_.capacity(); }

 private:
  std::vector<char> bytes_;
  std::size_t sent_ = 0;  // bytes at the front of bytes_ already sent
};
