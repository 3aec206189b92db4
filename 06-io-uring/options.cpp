#include "options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <cstdint>
#include <string>

namespace {

bool is_numeric_address(const std::string& host) {
  in6_addr scratch;  // big enough for either family
  return inet_pton(AF_INET, host.c_str(), &scratch) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &scratch) == 1;
}

// Accepts only a whole decimal number in 0..max: no sign, no spaces, no trailing text.
bool parse_number(std::string_view text, std::uint64_t max, std::uint64_t& value) {
  const char* end = text.data() + text.size();
  const auto [stop, status] = std::from_chars(text.data(), end, value);
  return !text.empty() && status == std::errc() && stop == end && value <= max;
}

Command usage_error(std::string message) {
  Command command;
  command.action = Command::Action::kUsageError;
  command.error = std::move(message);
  return command;
}

// Milliseconds up to a day: enough for any timeout, and far from overflowing a time_point.
constexpr std::uint64_t kMaxMilliseconds = 24ULL * 60 * 60 * 1000;

}  // namespace

Command parse_command_line(std::span<const std::string_view> args, unsigned default_threads) {
  Command command;
  Options& options = command.options;
  options.threads = default_threads;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view flag = args[i];
    if (flag == "--help") {
      command.action = Command::Action::kHelp;
      return command;
    }
    const bool known = flag == "--host" || flag == "--port" || flag == "--threads" ||
                       flag == "--idle-timeout-ms" || flag == "--max-connections" ||
                       flag == "--shutdown-timeout-ms" || flag == "--log-level";
    if (!known) {
      if (flag.starts_with("-")) return usage_error("unknown option '" + std::string(flag) + "'");
      return usage_error("unexpected argument '" + std::string(flag) + "'");
    }
    if (i + 1 == args.size()) return usage_error(std::string(flag) + " needs a value");
    const std::string value(args[++i]);
    const std::string quoted = std::string(flag) + ": '" + value + "'";
    std::uint64_t number = 0;
    if (flag == "--host") {
      if (!is_numeric_address(value)) {
        return usage_error(quoted + " is not a numeric IPv4 or IPv6 address");
      }
      options.host = value;
    } else if (flag == "--port") {
      if (!parse_number(value, 65535, number)) {
        return usage_error(quoted + " is not a port number (0 to 65535)");
      }
      options.port = static_cast<std::uint16_t>(number);
    } else if (flag == "--threads") {
      if (!parse_number(value, kMaxThreads, number) || number == 0) {
        return usage_error(quoted + " is not a thread count (1 to " + std::to_string(kMaxThreads) +
                           ")");
      }
      options.threads = static_cast<unsigned>(number);
    } else if (flag == "--max-connections") {
      if (!parse_number(value, SIZE_MAX, number)) {
        return usage_error(quoted + " is not a connection count (0 for no limit)");
      }
      options.max_connections = static_cast<std::size_t>(number);
    } else if (flag == "--log-level") {
      if (!parse_log_level(value, options.log_level)) {
        return usage_error(quoted + " is not a log level (error, warn, info or debug)");
      }
    } else {  // the two timeouts
      if (!parse_number(value, kMaxMilliseconds, number)) {
        return usage_error(quoted + " is not a number of milliseconds (0 to " +
                           std::to_string(kMaxMilliseconds) + ")");
      }
      const std::chrono::milliseconds ms(static_cast<std::int64_t>(number));
      (flag == "--idle-timeout-ms" ? options.idle_timeout : options.shutdown_timeout) = ms;
    }
  }
  return command;
}

std::string usage(std::string_view program) {
  return "usage: " + std::string(program) +
         " [--host ADDR] [--port N] [--threads N] [--idle-timeout-ms MS]\n"
         "       [--max-connections N] [--shutdown-timeout-ms MS] [--log-level LEVEL]\n"
         "\n"
         "A TCP echo server with one coroutine event loop per core: stage 05 of the course.\n"
         "\n"
         "  --host ADDR              numeric IPv4 or IPv6 address to listen on (default "
         "127.0.0.1)\n"
         "  --port N                 TCP port to listen on, 0 to pick a free one (default 7000)\n"
         "  --threads N              event loops, each on its own thread with its own\n"
         "                           SO_REUSEPORT listener (default: the number of usable cores)\n"
         "  --idle-timeout-ms MS     close a connection when no byte has moved either way for MS\n"
         "                           (default 0: never)\n"
         "  --max-connections N      open connections at most, over all loops; more are accepted\n"
         "                           and closed at once (default 0: no limit)\n"
         "  --shutdown-timeout-ms MS on SIGINT or SIGTERM, how long open connections may take to\n"
         "                           finish before they are closed (default 5000)\n"
         "  --log-level LEVEL        error, warn, info or debug (default info); logs go to stderr\n"
         "  --help                   print this help and exit\n"
         "\n"
         "SIGINT or SIGTERM: stop accepting, finish open connections, log the counters, exit 0.\n"
         "A second signal closes what is still open at once.\n";
}
