// echoload: a load generator for TCP echo servers that checks every echoed byte.
//
// Parses the command line, runs the load (load.cpp), prints the report (report.cpp) and exits
// 0 when every byte came back right, 1 otherwise, 2 on a usage error.

#include <exception>
#include <iostream>
#include <string_view>
#include <vector>

#include "load.hpp"
#include "options.hpp"
#include "report.hpp"
#include "socket.hpp"

int main(int argc, char** argv) {
  const std::string_view program = argc > 0 ? argv[0] : "echoload";
  const std::vector<std::string_view> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  const Command command = parse_command_line(args);
  switch (command.action) {
    case Command::Action::kHelp:
      std::cout << usage(program);
      return 0;
    case Command::Action::kUsageError:
      std::cerr << "error: " << command.error << "\n" << usage(program);
      return 2;
    case Command::Action::kRun:
      break;
  }
  try {
    const RunResult result = run_load(command.options);
    std::cout << (command.options.json ? json_report(result) : text_report(result));
    return result.ok() ? 0 : 1;
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
