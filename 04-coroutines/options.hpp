#pragma once
// The command line: `server [--host ADDR] [--port N]`.

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

struct Options {
  std::string host = "127.0.0.1";  // never a public address unless asked
  std::uint16_t port = 7000;       // 0: the kernel picks a free port
};

// What the command line asks for: run with options, print the help, or stop at a mistake.
struct Command {
  enum class Action { kRun, kHelp, kUsageError };
  Action action = Action::kRun;
  Options options;
  std::string error;  // with kUsageError: what is wrong, e.g. "--port: 'abc' is not a port number"
};

// Parses the arguments after the program name. Flags take the form `--flag value`.
Command parse_command_line(std::span<const std::string_view> args);

// The usage text, for stdout after --help and for stderr after a usage error.
std::string usage(std::string_view program);
