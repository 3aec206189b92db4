#include "stream.hpp"

#include <algorithm>
#include <cstring>

namespace {

// 2^64 divided by the golden ratio, rounded to an odd number: stepping by it visits every 64-bit
// value before repeating. SplitMix64 steps its state by it and mixes each step with mix64().
constexpr std::uint64_t kGolden = 0x9e3779b97f4a7c15;

// SplitMix64's finaliser: every input bit flips about half the output bits, so hashes of
// neighbouring inputs (block 7, block 8) look unrelated.
std::uint64_t mix64(std::uint64_t x) {
  x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9;
  x = (x ^ (x >> 27)) * 0x94d049bb133111eb;
  return x ^ (x >> 31);
}

// Byte i of a word, counted from the least significant, so streams are the same on any host.
std::uint8_t byte_of(std::uint64_t word, std::size_t i) {
  return static_cast<std::uint8_t>(word >> (8 * i));
}

}  // namespace

Pattern::Pattern(std::uint64_t seed) : seed_(seed) {
  std::uint64_t state = seed;
  for (std::size_t i = 0; i < kBlockBytes; i += 8) {
    state += kGolden;
    const std::uint64_t word = mix64(state);
    for (std::size_t j = 0; j < 8; ++j)
      bytes_[i + j] = byte_of(word, j);
  }
}

ByteStream::ByteStream(const Pattern& pattern, std::uint64_t connection)
    : pattern_(&pattern), key_(mix64(pattern.seed() ^ mix64((connection + 1) * kGolden))) {}

ByteStream::Mask ByteStream::block_mask(std::uint64_t block) const {
  const std::uint64_t word = mix64(key_ + (block + 1) * kGolden);
  Mask mask;
  for (std::size_t j = 0; j < mask.size(); ++j)
    mask[j] = byte_of(word, j);
  return mask;
}

std::uint8_t ByteStream::at(std::uint64_t offset) const {
  std::uint8_t byte = 0;
  fill(offset, {&byte, 1});
  return byte;
}

void ByteStream::fill(std::uint64_t offset, std::span<std::uint8_t> out) const {
  for (std::size_t done = 0; done < out.size();) {
    const std::uint64_t here = offset + done;
    const std::size_t start = here % kBlockBytes;
    const std::size_t n = std::min(out.size() - done, kBlockBytes - start);
    fill_in_block(start, block_mask(here / kBlockBytes), out.subspan(done, n));
    done += n;
  }
}

void ByteStream::fill_in_block(std::size_t start, const Mask& mask,
                               std::span<std::uint8_t> out) const {
  const std::uint8_t* pattern = pattern_->bytes().data() + start;
  const std::size_t n = out.size();
  // Byte by byte up to a multiple of 8 in the block, then 8 bytes at a time: the mask repeats
  // every 8 bytes, so a word of pattern XOR the mask's 8 bytes is 8 stream bytes (memcpy keeps
  // this true on any byte order). The compiler turns that loop into vector instructions; byte by
  // byte, sending and checking took more CPU than the kernel's copies.
  std::size_t i = 0;
  for (; i < n && (start + i) % 8 != 0; ++i)
    out[i] = pattern[i] ^ mask[(start + i) % 8];
  std::uint64_t mask_word;
  std::memcpy(&mask_word, mask.data(), sizeof mask_word);
  for (; i + 8 <= n; i += 8) {
    std::uint64_t word;
    std::memcpy(&word, pattern + i, sizeof word);
    word ^= mask_word;
    std::memcpy(out.data() + i, &word, sizeof word);
  }
  for (; i < n; ++i)
    out[i] = pattern[i] ^ mask[(start + i) % 8];
}

std::optional<Mismatch> ByteStream::verify(std::uint64_t offset,
                                           std::span<const std::uint8_t> got) const {
  // Make up the expected bytes a block's worth at a time and compare them with memcmp, which is
  // as fast as comparing gets; look for the first differing byte only when there is one.
  std::array<std::uint8_t, kBlockBytes> expected;
  for (std::size_t done = 0; done < got.size();) {
    const std::size_t n = std::min(got.size() - done, expected.size());
    fill(offset + done, std::span(expected).first(n));
    const auto chunk = got.subspan(done, n);
    if (std::memcmp(expected.data(), chunk.data(), n) != 0) {
      const auto [wrong, right] = std::mismatch(chunk.begin(), chunk.end(), expected.begin());
      const auto index = static_cast<std::size_t>(wrong - chunk.begin());
      return Mismatch{offset + done + index, *right, *wrong};
    }
    done += n;
  }
  return std::nullopt;
}
