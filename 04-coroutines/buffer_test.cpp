#include "buffer.hpp"

#include <doctest/doctest.h>

#include <string>
#include <string_view>

namespace {

std::span<const char> bytes_of(std::string_view text) {
  return {text.data(), text.size()};
}

std::string pending_text(const OutputBuffer& buffer) {
  const auto pending = buffer.pending();
  return std::string(pending.begin(), pending.end());
}

}  // namespace

TEST_CASE("a new buffer owes nothing and holds no heap memory") {
  const OutputBuffer buffer;
  CHECK(buffer.empty());
  CHECK(buffer.pending().empty());
  CHECK(buffer.capacity() == 0);
}

TEST_CASE("partial write keeps the unsent tail in order") {
  OutputBuffer buffer;
  buffer.append(bytes_of("hello, world"));
  buffer.consume(5);  // send() took "hello"
  CHECK(pending_text(buffer) == ", world");
  buffer.append(bytes_of("!"));
  CHECK(pending_text(buffer) == ", world!");
  buffer.consume(2);
  CHECK(pending_text(buffer) == "world!");
  CHECK(buffer.size() == 6);
}

TEST_CASE("binary bytes, NUL and 0xff included, come out exactly as they went in") {
  std::string all;
  for (int value = 0; value < 256; ++value)
    all.push_back(static_cast<char>(value));
  OutputBuffer buffer;
  buffer.append(bytes_of(all));
  buffer.append(bytes_of(std::string_view("\0\0", 2)));
  CHECK(pending_text(buffer) == all + std::string("\0\0", 2));
}

TEST_CASE("sending everything owed gives the memory back") {
  OutputBuffer buffer;
  buffer.append(bytes_of(std::string(100000, 'x')));
  CHECK(buffer.capacity() >= 100000);
  buffer.consume(99999);
  CHECK(buffer.size() == 1);
  buffer.consume(1);
  CHECK(buffer.empty());
  CHECK(buffer.capacity() == 0);
}

TEST_CASE("many partial sends with appends in between never reorder or lose a byte") {
  // A stand-in for a slow reader: append 7 bytes, send 5, over and over.
  OutputBuffer buffer;
  std::string expected;
  std::string sent;
  char next = 0;
  for (int round = 0; round < 10000; ++round) {
    std::string chunk;
    for (int i = 0; i < 7; ++i)
      chunk.push_back(next++);
    buffer.append(bytes_of(chunk));
    expected += chunk;
    const auto pending = buffer.pending();
    const std::size_t n = std::min<std::size_t>(5, pending.size());
    sent.append(pending.data(), n);
    buffer.consume(n);
  }
  sent += pending_text(buffer);
  CHECK(sent == expected);
  // The sent prefix is dropped as it goes: memory follows what is owed, not what passed through.
  CHECK(buffer.capacity() < 4 * buffer.size() + 64);
}
