// Stage 04-coroutines: a TCP echo server whose connections are C++20 coroutines.
//
// Parses the command line, opens the listening socket, prints "listening on HOST:PORT",
// then runs the reactor until a fatal error.

#include <csignal>
#include <exception>
#include <iostream>
#include <string_view>
#include <vector>

#include "connection.hpp"
#include "options.hpp"
#include "reactor.hpp"
#include "server.hpp"
#include "socket.hpp"

int main(int argc, char** argv) {
  // Sockets send with MSG_NOSIGNAL, but stderr can be a pipe too (`server 2>&1 | tee log`).
  // Once its reader has gone, as tee does on Ctrl-C, a write to it must fail with EPIPE rather
  // than raise SIGPIPE, whose default action would end the server in the middle of its work.
  std::signal(SIGPIPE, SIG_IGN);
  const std::string_view program = argc > 0 ? argv[0] : "server";
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
    Fd listener = listen_on(command.options.host, command.options.port);
    // Flushed at once: scripts and tests wait for this line before they connect.
    std::cout << "listening on " << local_address(listener.get()) << std::endl;
    Reactor reactor;
    Listener clients(reactor, std::move(listener));
    reactor.spawn(accept_clients(reactor, clients));
    reactor.run();
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
