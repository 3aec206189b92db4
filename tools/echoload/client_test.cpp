#include "client.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

Clock::time_point at_us(int microseconds) {
  return Clock::time_point{} + std::chrono::microseconds(microseconds);
}

std::vector<Clock::duration> durations_us(std::initializer_list<int> microseconds) {
  std::vector<Clock::duration> out;
  for (int us : microseconds)
    out.push_back(std::chrono::microseconds(us));
  return out;
}

// A flow with all `depth` messages issued, and the round trips it has reported, in order.
struct Probe {
  Probe(std::size_t size, std::size_t depth) : flow(size, depth) { flow.issue(depth); }
  std::size_t receive(std::size_t n, Clock::time_point now) {
    return flow.on_received(n, now, [&](Clock::duration rtt) { round_trips.push_back(rtt); });
  }
  MessageFlow flow;
  std::vector<Clock::duration> round_trips;
};

}  // namespace

TEST_CASE("a message's round trip runs from the send() of its last byte to its last echoed byte") {
  Probe probe(10, 3);
  CHECK(probe.flow.unsent() == 30);
  probe.flow.on_sent(25, at_us(1));  // messages 0 and 1 whole, 2 half
  probe.flow.on_sent(5, at_us(2));   // the rest of message 2
  CHECK(probe.flow.unsent() == 0);
  CHECK(probe.flow.awaited() == 30);

  CHECK(probe.receive(7, at_us(10)) == 0);
  CHECK(probe.receive(13, at_us(20)) == 2);  // ends messages 0 and 1
  CHECK(probe.receive(9, at_us(30)) == 0);
  CHECK(probe.receive(1, at_us(40)) == 1);  // the last byte of message 2
  CHECK(probe.round_trips == durations_us({19, 19, 38}));
  CHECK(probe.flow.awaited() == 0);
}

TEST_CASE("echoes split at arbitrary points complete every message once, at the right time") {
  constexpr std::size_t kSize = 37;
  constexpr std::size_t kMessages = 500;
  Probe probe(kSize, 4);
  MessageFlow& flow = probe.flow;
  // The model: when each message's last byte was sent, and when its last echoed byte came.
  std::vector<Clock::time_point> last_sent;
  std::vector<Clock::time_point> last_echoed;
  int tick = 0;
  std::uint64_t lcg = 1;  // chunk sizes from 1 to 100 bytes, at any alignment
  auto send = [&](std::uint64_t n) {
    const Clock::time_point now = at_us(++tick);
    flow.on_sent(n, now);
    while (last_sent.size() < flow.sent() / kSize)
      last_sent.push_back(now);
  };
  while (last_echoed.size() < kMessages) {
    send(flow.unsent() / 2);
    send(flow.unsent());
    lcg = (lcg * 1103515245 + 12345) % 2147483648;
    const std::size_t n = std::min<std::uint64_t>(lcg % 100 + 1, flow.awaited());
    const Clock::time_point now = at_us(++tick);
    const std::size_t done = probe.receive(n, now);
    while (last_echoed.size() < flow.received() / kSize)
      last_echoed.push_back(now);
    flow.issue(done);
  }
  REQUIRE(probe.round_trips.size() == last_echoed.size());
  for (std::size_t k = 0; k < last_echoed.size(); ++k) {
    CAPTURE(k);
    CHECK(probe.round_trips[k] == last_echoed[k] - last_sent[k]);
  }
}

TEST_CASE("one send and one read can carry many whole messages") {
  Probe probe(8, 100);
  probe.flow.on_sent(800, at_us(0));
  CHECK(probe.receive(800, at_us(5)) == 100);
  CHECK(probe.round_trips == std::vector<Clock::duration>(100, std::chrono::microseconds(5)));
}

TEST_CASE("bytes of a message not yet wholly sent start no round trip") {
  Probe probe(100, 1);
  probe.flow.on_sent(99, at_us(0));
  CHECK(probe.receive(99, at_us(1)) == 0);
  probe.flow.on_sent(1, at_us(2));
  CHECK(probe.receive(1, at_us(3)) == 1);
  CHECK(probe.round_trips == durations_us({1}));
}
