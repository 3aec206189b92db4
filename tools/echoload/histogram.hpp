#pragma once
// LatencyHistogram: percentiles of millions of round trips in fixed, small memory.

#include <cstddef>
#include <cstdint>
#include <vector>

// Counts values (nanoseconds) in log-linear buckets, the layout HdrHistogram uses: below 256 a
// bucket per value, then each power of two split into 128 equal buckets. A bucket is at most
// 1/128 of its lowest value wide, so a reported percentile is within 0.4% of a recorded value.
// Values from 0 to kMaxTracked (137 s) fit in about 4,000 buckets (32 KiB); larger ones count in
// the top bucket, and max() still reports them exactly.
class LatencyHistogram {
 public:
  static constexpr std::uint64_t kMaxTracked = (std::uint64_t{1} << 37) - 1;

  LatencyHistogram();

  void record(std::uint64_t value);

  std::uint64_t count() const { return count_; }
  std::uint64_t min() const { return count_ == 0 ? 0 : min_; }
  std::uint64_t max() const { return max_; }
  // The value that `percent` (0 to 100) of the recorded values are at or below: the middle of the
  // bucket that holds that rank, kept within [min(), max()]; the largest value is exact. 0 when
  // nothing was recorded.
  std::uint64_t percentile(double percent) const;

 private:
  static std::size_t bucket_of(std::uint64_t value);
  static std::uint64_t lowest_in(std::size_t bucket);

  std::vector<std::uint64_t> counts_;  // one per bucket, sized once
  std::uint64_t count_ = 0;
  std::uint64_t min_ = UINT64_MAX;
  std::uint64_t max_ = 0;
};
