#include "stream.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

std::vector<std::uint8_t> bytes_of(const ByteStream& stream, std::uint64_t offset, std::size_t n) {
  std::vector<std::uint8_t> bytes(n);
  stream.fill(offset, bytes);
  return bytes;
}

// How many of n bytes from `offset` differ between two streams.
std::size_t differences(const ByteStream& a, const ByteStream& b, std::uint64_t offset,
                        std::size_t n) {
  std::size_t count = 0;
  for (std::size_t i = 0; i < n; ++i)
    count += a.at(offset + i) != b.at(offset + i);
  return count;
}

}  // namespace

TEST_CASE("the same seed, connection and offset give the same byte, in any object") {
  const Pattern first(42);
  const Pattern second(42);
  const ByteStream a(first, 7);
  const ByteStream b(second, 7);
  for (std::uint64_t offset : {0ull, 1ull, 4095ull, 4096ull, 123'456'789ull, 1ull << 40}) {
    CAPTURE(offset);
    CHECK(a.at(offset) == b.at(offset));
  }
}

TEST_CASE("fill at any offset matches the stream byte by byte, across block boundaries") {
  const Pattern pattern(1);
  const ByteStream stream(pattern, 3);
  for (std::uint64_t offset :
       {std::size_t{0}, std::size_t{5}, kBlockBytes - 3, 3 * kBlockBytes + 1}) {
    CAPTURE(offset);
    const auto bytes = bytes_of(stream, offset, 2 * kBlockBytes + 17);
    for (std::size_t i = 0; i < bytes.size(); ++i)
      REQUIRE(bytes[i] == stream.at(offset + i));
  }
}

TEST_CASE("streams of different connections, and of different seeds, are unrelated") {
  const Pattern pattern(1);
  const Pattern other_seed(2);
  // Unrelated bytes are equal one time in 256, so nearly all of them differ.
  CHECK(differences(ByteStream(pattern, 0), ByteStream(pattern, 1), 0, 10'000) > 9'800);
  CHECK(differences(ByteStream(pattern, 0), ByteStream(other_seed, 0), 0, 10'000) > 9'800);
}

TEST_CASE("a stream does not repeat itself from one block to the next") {
  // A server that dropped or repeated a whole block must not go unnoticed.
  const Pattern pattern(1);
  const ByteStream stream(pattern, 0);
  for (std::uint64_t block = 0; block < 4; ++block) {
    CAPTURE(block);
    const auto here = bytes_of(stream, block * kBlockBytes, kBlockBytes);
    CHECK(stream.verify((block + 1) * kBlockBytes, here).has_value());
  }
}

TEST_CASE("verify accepts the stream's own bytes at an arbitrary offset") {
  const Pattern pattern(9);
  const ByteStream stream(pattern, 2);
  const std::uint64_t offset = 10 * kBlockBytes - 100;
  CHECK_FALSE(stream.verify(offset, bytes_of(stream, offset, 5000)).has_value());
  CHECK_FALSE(stream.verify(offset, {}).has_value());
}

TEST_CASE("verify reports the first wrong byte: its offset, what was expected and what came") {
  const Pattern pattern(9);
  const ByteStream stream(pattern, 2);
  const std::uint64_t offset = 777;
  auto bytes = bytes_of(stream, offset, 3 * kBlockBytes);
  bytes[5000] ^= 0x01;
  bytes[9000] ^= 0xff;  // a later one is not the first
  const auto mismatch = stream.verify(offset, bytes);
  REQUIRE(mismatch.has_value());
  CHECK(mismatch->offset == offset + 5000);
  CHECK(mismatch->expected == stream.at(offset + 5000));
  CHECK(mismatch->got == (stream.at(offset + 5000) ^ 0x01));
}

TEST_CASE("bytes that are right but belong at another offset are a mismatch") {
  const Pattern pattern(9);
  const ByteStream stream(pattern, 2);
  const auto shifted = bytes_of(stream, 1, 64);  // as if the server lost the first byte
  const auto mismatch = stream.verify(0, shifted);
  REQUIRE(mismatch.has_value());
  CHECK(mismatch->offset < 8);
}
