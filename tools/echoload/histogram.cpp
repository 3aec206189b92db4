#include "histogram.hpp"

#include <algorithm>
#include <bit>
#include <cassert>
#include <cmath>

namespace {

// 2^7 = 128 buckets per power of two: 0.8% wide, so a bucket's middle is within 0.4%.
constexpr unsigned kSubBits = 7;
constexpr std::uint64_t kSubBuckets = std::uint64_t{1} << kSubBits;

}  // namespace

LatencyHistogram::LatencyHistogram() : counts_(bucket_of(kMaxTracked) + 1) {}

// Values below 2 * kSubBuckets are their own bucket. A larger value keeps its top kSubBits + 1
// bits (its mantissa, 128 to 255) and drops `shift` low bits; each shift has 128 buckets after
// the 256 exact ones, so the index is shift * 128 + mantissa.
std::size_t LatencyHistogram::bucket_of(std::uint64_t value) {
  const int shift = std::max(0, static_cast<int>(std::bit_width(value)) - int{kSubBits} - 1);
  return static_cast<std::size_t>(shift) * kSubBuckets + (value >> shift);
}

std::uint64_t LatencyHistogram::lowest_in(std::size_t bucket) {
  if (bucket < 2 * kSubBuckets) return bucket;
  const std::size_t shift = bucket / kSubBuckets - 1;
  const std::uint64_t mantissa = bucket % kSubBuckets + kSubBuckets;
  return mantissa << shift;
}

void LatencyHistogram::record(std::uint64_t value) {
  ++counts_[bucket_of(std::min(value, kMaxTracked))];
  ++count_;
  min_ = std::min(min_, value);
  max_ = std::max(max_, value);
}

std::uint64_t LatencyHistogram::percentile(double percent) const {
  if (count_ == 0) return 0;
  // The rank'th smallest value, counting from 1: for 50% of 10 values the 5th, for 100% the last.
  // In whole parts per million, because 99.9 / 100 * 1000 is 999.0000000000001 in floating point,
  // which would round up to the wrong rank. (The product fits 64 bits up to 10^13 values.)
  const auto ppm = static_cast<std::uint64_t>(std::llround(std::clamp(percent, 0.0, 100.0) * 1e4));
  const std::uint64_t rank = std::max<std::uint64_t>(1, (ppm * count_ + 999'999) / 1'000'000);
  if (rank == count_) return max_;  // the largest value is known exactly
  std::uint64_t seen = 0;
  for (std::size_t bucket = 0; bucket < counts_.size(); ++bucket) {
    seen += counts_[bucket];
    if (seen < rank) continue;
    const std::uint64_t middle = (lowest_in(bucket) + lowest_in(bucket + 1) - 1) / 2;
    return std::clamp(middle, min_, max_);
  }
  assert(false && "the counts add up to count_");
  return max_;
}
