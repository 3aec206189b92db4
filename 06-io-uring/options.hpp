#pragma once
// The command line: `server [--host ADDR] [--port N] [--threads N] [--idle-timeout-ms MS]
// [--max-connections N] [--shutdown-timeout-ms MS] [--log-level LEVEL]`.

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "log.hpp"

struct Options {
  std::string host = "127.0.0.1";  // never a public address unless asked
  std::uint16_t port = 7000;       // 0: the kernel picks a free port
  unsigned threads = 0;            // event loops; 0 until parsed: the number of usable cores
  std::chrono::milliseconds idle_timeout{0};         // 0: connections may idle for ever
  std::size_t max_connections = 0;                   // 0: no limit
  std::chrono::milliseconds shutdown_timeout{5000};  // for open connections to finish
  LogLevel log_level = LogLevel::kInfo;
};

// The most --threads accepts: more loops than this is a typo, not a machine.
constexpr unsigned kMaxThreads = 1024;

// What the command line asks for: run with options, print the help, or stop at a mistake.
struct Command {
  enum class Action { kRun, kHelp, kUsageError };
  Action action = Action::kRun;
  Options options;
  std::string error;  // with kUsageError: what is wrong, e.g. "--port: 'abc' is not a port number"
};

// Parses the arguments after the program name. Flags take the form `--flag value`.
// default_threads: what --threads is when not given (the caller counts the usable cores).
Command parse_command_line(std::span<const std::string_view> args, unsigned default_threads);

// The usage text, for stdout after --help and for stderr after a usage error.
std::string usage(std::string_view program);
