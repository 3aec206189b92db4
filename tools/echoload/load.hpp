#pragma once
// run_load: one whole run, from the first connect to the last close.

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>

#include "histogram.hpp"
#include "options.hpp"

// The first byte that came back wrong: one that differs from what was sent at that offset, or
// one the server sent although nothing was sent there (an idle connection receiving anything,
// or an echo longer than what it echoes).
struct FirstMismatch {
  std::size_t connection = 0;  // index among the active connections, or among the idle ones
  bool idle = false;
  std::uint64_t offset = 0;              // in the connection's stream
  std::optional<std::uint8_t> expected;  // empty: nothing was sent at that offset
  std::uint8_t got = 0;
};

// Failures, each counted once per connection, which is then closed.
struct ErrorCounts {
  std::uint64_t mismatches = 0;        // an echoed byte that is not what was sent
  std::uint64_t early_closes = 0;      // EOF or reset from the server while we were still going
  std::uint64_t connect_failures = 0;  // never established
  std::uint64_t stalled = 0;           // echo still incomplete kDrainTime after the window
  std::uint64_t total() const { return mismatches + early_closes + connect_failures + stalled; }
};

// What a run measured. Later figures (server CPU time, ...) join here and in report.cpp.
struct RunResult {
  Options options;               // what was asked for, repeated in the report
  std::uint64_t messages = 0;    // echoes completed inside the measured window
  LatencyHistogram round_trips;  // of those messages, in nanoseconds
  ErrorCounts errors;
  std::optional<FirstMismatch> first_mismatch;
  std::string first_error;  // one line on the first early close, connect failure or stall

  double messages_per_s() const { return messages / options.duration_s; }
  // Echoed payload, counted in one direction.
  double mib_per_s() const { return messages_per_s() * options.size / (1024.0 * 1024.0); }
  // Every byte came back right, and something was measured.
  bool ok() const { return errors.total() == 0 && messages > 0; }
};

// Connects, warms up, measures for options.duration_s, waits for the echoes still in flight,
// and closes everything. Connection-level failures are counted in the result; FatalError is
// thrown only when the run cannot start (too few descriptors, epoll failing).
RunResult run_load(const Options& options);
