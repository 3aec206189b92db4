#include "log.hpp"

#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <string>

namespace {

LogLevel threshold = LogLevel::kInfo;

constexpr std::array<std::string_view, 4> kNames = {"error", "warn", "info", "debug"};

}  // namespace

bool parse_log_level(std::string_view text, LogLevel& level) {
  for (std::size_t i = 0; i < kNames.size(); ++i) {
    if (text == kNames[i]) {
      level = static_cast<LogLevel>(i);
      return true;
    }
  }
  return false;
}

void set_log_level(LogLevel level) {
  threshold = level;
}

bool log_enabled(LogLevel level) {
  return level <= threshold;
}

void log(LogLevel level, std::string_view message) {
  if (!log_enabled(level)) return;
  std::string line;
  try {
    const std::string_view name = kNames[static_cast<std::size_t>(level)];
    line.reserve(name.size() + 2 + message.size() + 1);
    line.append(name).append(": ").append(message).push_back('\n');
  } catch (...) {
    return;  // out of memory: a lost log line is better than a lost server
  }
  // stderr is unbuffered and shared: one write per line, so that a pipe (up to PIPE_BUF) or an
  // O_APPEND file keeps each line whole. After a short write the rest follows (and may land
  // after another thread's line). On an error the line is dropped and the server goes on:
  // EPIPE, once the reader of a pipe has gone, comes back as an error only because main()
  // ignores SIGPIPE; otherwise the signal would end the server here.
  const char* rest = line.data();
  std::size_t left = line.size();
  while (left > 0) {
    const ssize_t n = ::write(STDERR_FILENO, rest, left);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return;
    rest += n;
    left -= static_cast<std::size_t>(n);
  }
}

std::string count_of(std::uint64_t n, std::string_view noun) {
  std::string text = std::to_string(n);
  text.append(" ").append(noun);
  if (n != 1) text.push_back('s');
  return text;
}
