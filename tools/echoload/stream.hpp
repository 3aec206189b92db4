#pragma once
// The bytes each connection sends: a deterministic stream that can be recomputed at any offset,
// so the echo is checked byte for byte without keeping a copy of what was sent.

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

// A stream is cut into blocks of this many bytes. Every block starts from the same pattern (a
// page fits the CPU's L1 cache), masked with 8 bytes of its own, so no two blocks of one stream,
// or of two streams, are alike, and a lost or repeated block is caught like any other error.
constexpr std::size_t kBlockBytes = 4096;

// The pseudo-random page shared by every stream of one seed. Streams borrow it.
class Pattern {
 public:
  explicit Pattern(std::uint64_t seed);
  std::uint64_t seed() const { return seed_; }
  std::span<const std::uint8_t, kBlockBytes> bytes() const { return bytes_; }

 private:
  std::uint64_t seed_;
  std::array<std::uint8_t, kBlockBytes> bytes_;
};

// The first byte of a received chunk that is not what was sent.
struct Mismatch {
  std::uint64_t offset = 0;  // in the stream
  std::uint8_t expected = 0;
  std::uint8_t got = 0;
};

// The byte stream of one connection: byte `offset` is pattern[offset % kBlockBytes] XOR byte
// (offset % 8) of the mask of block offset / kBlockBytes, a hash of (seed, connection, block).
// Borrows the pattern, which must outlive it.
class ByteStream {
 public:
  ByteStream(const Pattern& pattern, std::uint64_t connection);

  std::uint8_t at(std::uint64_t offset) const;
  // Writes the stream's bytes from `offset` on into `out`.
  void fill(std::uint64_t offset, std::span<std::uint8_t> out) const;
  // Compares `got` with the stream from `offset` on: the first byte that differs, if any.
  std::optional<Mismatch> verify(std::uint64_t offset, std::span<const std::uint8_t> got) const;

 private:
  using Mask = std::array<std::uint8_t, 8>;
  Mask block_mask(std::uint64_t block) const;
  // Writes out.size() bytes of one block, from its byte `start` on.
  void fill_in_block(std::size_t start, const Mask& mask, std::span<std::uint8_t> out) const;

  const Pattern* pattern_;
  std::uint64_t key_;  // a hash of seed and connection; block masks are derived from it
};
