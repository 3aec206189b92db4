#include "options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <charconv>
#include <string>

namespace {

bool is_numeric_address(const std::string& host) {
  in6_addr scratch;  // big enough for either family
  return inet_pton(AF_INET, host.c_str(), &scratch) == 1 ||
         inet_pton(AF_INET6, host.c_str(), &scratch) == 1;
}

// Accepts only a whole decimal number in 0..65535: no sign, no spaces, no trailing text.
bool parse_port(std::string_view text, std::uint16_t& port) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, status] = std::from_chars(text.data(), end, value);
  if (text.empty() || status != std::errc() || stop != end || value > 65535) return false;
  port = static_cast<std::uint16_t>(value);
  return true;
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
    const std::string_view flag = args[i];
    if (flag == "--help") {
      command.action = Command::Action::kHelp;
      return command;
    }
    if (flag != "--host" && flag != "--port") {
      if (flag.starts_with("-")) return usage_error("unknown option '" + std::string(flag) + "'");
      return usage_error("unexpected argument '" + std::string(flag) + "'");
    }
    if (i + 1 == args.size()) return usage_error(std::string(flag) + " needs a value");
    const std::string value(args[++i]);
    if (flag == "--host") {
      if (!is_numeric_address(value)) {
        return usage_error("--host: '" + value + "' is not a numeric IPv4 or IPv6 address");
      }
      command.options.host = value;
    } else if (!parse_port(value, command.options.port)) {
      return usage_error("--port: '" + value + "' is not a port number (0 to 65535)");
    }
  }
  return command;
}

std::string usage(std::string_view program) {
  return "usage: " + std::string(program) +
         " [--host ADDR] [--port N]\n"
         "\n"
         "A TCP echo server of C++20 coroutines on edge-triggered epoll: stage 04 of the course.\n"
         "\n"
         "  --host ADDR  numeric IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
         "  --port N     TCP port to listen on, 0 to pick a free one (default 7000)\n"
         "  --help       print this help and exit\n";
}
