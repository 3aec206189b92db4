#pragma once
// The command line: `echoload [--host ADDR] [--port N] [--idle K] [--connections C] ...`.

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>

// One run's parameters. The report repeats them, so a result always says what produced it.
struct Options {
  std::string host = "127.0.0.1";  // the server; numeric, never a DNS lookup
  std::uint16_t port = 7000;
  std::size_t idle = 0;         // connections opened first that never send
  std::size_t connections = 1;  // active connections
  std::size_t depth = 1;        // messages in flight per active connection
  std::size_t size = 64;        // bytes per message
  double duration_s = 5;        // the measured window
  double warmup_s = 1;          // before the window: load runs, nothing is counted
  std::uint64_t seed = 1;       // picks the byte streams
  std::size_t rcvbuf = 0;       // SO_RCVBUF of each active connection; 0: the kernel's own
  bool json = false;            // report as one JSON object instead of text
  bool quiet = false;           // no progress lines on stderr

  bool operator==(const Options&) const = default;
};

// What the command line asks for: run with options, print the help, or stop at a mistake.
struct Command {
  enum class Action { kRun, kHelp, kUsageError };
  Action action = Action::kRun;
  Options options;
  std::string error;  // with kUsageError: what is wrong, e.g. "--depth: '0' is not ..."
};

// Parses the arguments after the program name. Flags take the form `--flag value`.
Command parse_command_line(std::span<const std::string_view> args);

// The usage text, for stdout after --help and for stderr after a usage error.
std::string usage(std::string_view program);
