#include "histogram.hpp"

#include <doctest/doctest.h>

#include <cmath>

namespace {

// How far `reported` is from `exact`, as a fraction of `exact`.
double relative_error(std::uint64_t reported, std::uint64_t exact) {
  return std::abs(static_cast<double>(reported) - static_cast<double>(exact)) / exact;
}

}  // namespace

TEST_CASE("an empty histogram reports 0 for every percentile, count and max") {
  const LatencyHistogram histogram;
  CHECK(histogram.count() == 0);
  CHECK(histogram.max() == 0);
  CHECK(histogram.min() == 0);
  CHECK(histogram.percentile(50) == 0);
  CHECK(histogram.percentile(100) == 0);
}

TEST_CASE("one value is every percentile, exactly") {
  LatencyHistogram histogram;
  histogram.record(123'456);
  CHECK(histogram.count() == 1);
  for (double p : {0.0, 50.0, 99.0, 99.9, 100.0}) {
    CAPTURE(p);
    CHECK(histogram.percentile(p) == 123'456);
  }
}

TEST_CASE("values below 256 ns are counted exactly") {
  LatencyHistogram histogram;
  for (std::uint64_t v = 1; v <= 200; ++v)
    histogram.record(v);
  CHECK(histogram.percentile(50) == 100);
  CHECK(histogram.percentile(99) == 198);
  CHECK(histogram.percentile(100) == 200);
}

TEST_CASE("percentiles of a uniform distribution are within 1%") {
  // 1 us to 100 ms in steps of 1 us: the p-th percentile is p% of 100 ms.
  LatencyHistogram histogram;
  for (std::uint64_t us = 1; us <= 100'000; ++us)
    histogram.record(us * 1000);
  CHECK(histogram.count() == 100'000);
  CHECK(relative_error(histogram.percentile(50), 50'000'000) < 0.01);
  CHECK(relative_error(histogram.percentile(99), 99'000'000) < 0.01);
  CHECK(relative_error(histogram.percentile(99.9), 99'900'000) < 0.01);
  CHECK(histogram.max() == 100'000'000);
  CHECK(histogram.percentile(100) == 100'000'000);
}

TEST_CASE("99.9% of 1000 values is the 999th, not the 1000th") {
  // 99.9 / 100 * 1000 is 999.0000000000001 in floating point; rounding that up would be wrong.
  LatencyHistogram histogram;
  for (int i = 0; i < 999; ++i)
    histogram.record(1000);
  histogram.record(1'000'000);
  CHECK(relative_error(histogram.percentile(99.9), 1000) < 0.01);
  CHECK(histogram.percentile(100) == 1'000'000);
}

TEST_CASE("a skewed distribution: the tail shows in p99.9, not in p50") {
  LatencyHistogram histogram;
  for (int i = 0; i < 9990; ++i)
    histogram.record(20'000);  // 20 us
  for (int i = 0; i < 10; ++i)
    histogram.record(5'000'000);  // 5 ms
  CHECK(relative_error(histogram.percentile(50), 20'000) < 0.01);
  CHECK(relative_error(histogram.percentile(99.9), 20'000) < 0.01);
  CHECK(relative_error(histogram.percentile(99.95), 5'000'000) < 0.01);
}

TEST_CASE("every value from 1 us to 100 s is reported within 1%") {
  // The middle value of three, so neither min nor max pins the answer.
  for (double v = 1000; v <= 100e9; v *= 1.37) {
    const auto value = static_cast<std::uint64_t>(v);
    CAPTURE(value);
    LatencyHistogram histogram;
    histogram.record(1);
    histogram.record(value);
    histogram.record(LatencyHistogram::kMaxTracked);
    CHECK(relative_error(histogram.percentile(50), value) < 0.01);
  }
}

TEST_CASE("values beyond the tracked range land in the top bucket, and max stays exact") {
  constexpr std::uint64_t kHuge = LatencyHistogram::kMaxTracked * 10;
  LatencyHistogram histogram;
  histogram.record(1000);
  histogram.record(kHuge);
  histogram.record(kHuge);
  CHECK(histogram.max() == kHuge);
  CHECK(histogram.percentile(100) == kHuge);
  CHECK(histogram.percentile(50) <= LatencyHistogram::kMaxTracked);
  CHECK(relative_error(histogram.percentile(50), LatencyHistogram::kMaxTracked) < 0.01);
  CHECK(relative_error(histogram.percentile(1), 1000) < 0.01);
}
