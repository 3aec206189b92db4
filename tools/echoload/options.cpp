#include "options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <array>
#include <cassert>
#include <charconv>
#include <cmath>
#include <limits>

namespace {

// Upper bounds that catch a typo (an extra zero) before it opens a million sockets. The
// timestamps of messages in flight take connections * depth * 8 bytes.
constexpr std::uint64_t kMaxIdle = 1'000'000;
constexpr std::uint64_t kMaxConnections = 100'000;
constexpr std::uint64_t kMaxDepth = 4096;
constexpr std::uint64_t kMaxSize = 64 << 20;
constexpr double kMaxSeconds = 24 * 60 * 60;
constexpr std::uint64_t kMaxRcvbuf = 1 << 30;

// Accepts a whole decimal number in [low, high]: no sign, no spaces, no trailing text. Returns
// what is wrong with it, or "" when it is fine.
template <typename T>
std::string parse_whole(std::string_view flag, std::string_view text, std::uint64_t low,
                        std::uint64_t high, T& out) {
  std::uint64_t value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, status] = std::from_chars(text.data(), end, value);
  if (text.empty() || status != std::errc() || stop != end || value < low || value > high) {
    return std::string(flag) + ": '" + std::string(text) + "' is not a whole number from " +
           std::to_string(low) + " to " + std::to_string(high);
  }
  out = static_cast<T>(value);
  return "";
}

// Accepts a number of seconds such as 2 or 0.25, above 0 (or from 0 with zero_ok), at most a day.
std::string parse_seconds(std::string_view flag, std::string_view text, bool zero_ok, double& out) {
  double value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, status] = std::from_chars(text.data(), end, value);
  // from_chars also reads "inf", "nan" and "-1"; the range check turns those away.
  const bool in_range =
      std::isfinite(value) && (zero_ok ? value >= 0 : value > 0) && value <= kMaxSeconds;
  if (text.empty() || status != std::errc() || stop != end || !in_range) {
    return std::string(flag) + ": '" + std::string(text) + "' is not a number of seconds " +
           (zero_ok ? "from 0" : "above 0") + " to " + std::to_string(int(kMaxSeconds));
  }
  out = value;
  return "";
}

std::string parse_host(std::string_view flag, std::string_view text, std::string& out) {
  const std::string host(text);
  in6_addr scratch;  // big enough for either family
  if (inet_pton(AF_INET, host.c_str(), &scratch) != 1 &&
      inet_pton(AF_INET6, host.c_str(), &scratch) != 1) {
    return std::string(flag) + ": '" + host + "' is not a numeric IPv4 or IPv6 address";
  }
  out = host;
  return "";
}

// The flags that take a value; apply_value() stores each one's.
constexpr std::array<std::string_view, 10> kValueFlags = {
    "--host", "--port",     "--idle",   "--connections", "--depth",
    "--size", "--duration", "--warmup", "--seed",        "--rcvbuf"};

// Stores the value of one of kValueFlags in options. Returns what is wrong with it, or "".
std::string apply_value(std::string_view flag, std::string_view value, Options& o) {
  if (flag == "--host") return parse_host(flag, value, o.host);
  // Port 0 means "any port" to bind(), but there is nothing to connect to there.
  if (flag == "--port") return parse_whole(flag, value, 1, 65535, o.port);
  if (flag == "--idle") return parse_whole(flag, value, 0, kMaxIdle, o.idle);
  if (flag == "--connections") return parse_whole(flag, value, 1, kMaxConnections, o.connections);
  if (flag == "--depth") return parse_whole(flag, value, 1, kMaxDepth, o.depth);
  if (flag == "--size") return parse_whole(flag, value, 1, kMaxSize, o.size);
  if (flag == "--duration") return parse_seconds(flag, value, false, o.duration_s);
  if (flag == "--warmup") return parse_seconds(flag, value, true, o.warmup_s);
  if (flag == "--rcvbuf") return parse_whole(flag, value, 0, kMaxRcvbuf, o.rcvbuf);
  assert(flag == "--seed");
  return parse_whole(flag, value, 0, std::numeric_limits<std::uint64_t>::max(), o.seed);
}

Command usage_error(std::string message) {
  Command command;
  command.action = Command::Action::kUsageError;
  command.error = std::move(message);
  return command;
}

}  // namespace

Command parse_command_line(std::span<const std::string_view> args) {
  Command command;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    if (arg == "--help") {
      command.action = Command::Action::kHelp;
      return command;
    }
    if (arg == "--json" || arg == "--quiet") {
      (arg == "--json" ? command.options.json : command.options.quiet) = true;
      continue;
    }
    if (std::find(kValueFlags.begin(), kValueFlags.end(), arg) == kValueFlags.end()) {
      if (arg.starts_with("-")) return usage_error("unknown option '" + std::string(arg) + "'");
      return usage_error("unexpected argument '" + std::string(arg) + "'");
    }
    if (i + 1 == args.size()) return usage_error(std::string(arg) + " needs a value");
    std::string error = apply_value(arg, args[++i], command.options);
    if (!error.empty()) return usage_error(std::move(error));
  }
  return command;
}

std::string usage(std::string_view program) {
  return "usage: " + std::string(program) +
         " [--host ADDR] [--port N] [--idle K] [--connections C] [--depth D]\n"
         "         [--size S] [--duration SECONDS] [--warmup SECONDS] [--seed N] [--rcvbuf BYTES]\n"
         "         [--json] [--quiet]\n"
         "\n"
         "Load for a TCP echo server: first K idle connections that never send, then C active\n"
         "connections that each keep D messages of S bytes in flight, sending a new message\n"
         "whenever the echo of an earlier one is complete. Every echoed byte is checked against\n"
         "what was sent. Reports messages/s, MiB/s (echoed payload, one direction) and round-trip\n"
         "percentiles: a round trip runs from the moment send() has taken a message's last byte\n"
         "to the arrival of its last echoed byte. Exits 0 when every byte came back right, 1 on\n"
         "any error or when no message completed in the measured window, 2 on a usage error.\n"
         "\n"
         "  --host ADDR          numeric IPv4 or IPv6 address of the server (default 127.0.0.1)\n"
         "  --port N             the server's TCP port (default 7000)\n"
         "  --idle K             idle connections, opened before the active ones (default 0)\n"
         "  --connections C      active connections (default 1)\n"
         "  --depth D            messages in flight per active connection (default 1)\n"
         "  --size S             bytes per message (default 64)\n"
         "  --duration SECONDS   the measured window, fractions allowed (default 5)\n"
         "  --warmup SECONDS     load before the window that is not counted (default 1)\n"
         "  --seed N             picks the byte streams; the same seed sends the same bytes "
         "(default 1)\n"
         "  --rcvbuf BYTES       SO_RCVBUF of each active connection: a small one makes the\n"
         "                       server's sends fall short, like a slow client (default 0: the\n"
         "                       kernel's, which grows as needed)\n"
         "  --json               print the report as one JSON object\n"
         "  --quiet              no progress lines on stderr\n"
         "  --help               print this help and exit\n";
}
