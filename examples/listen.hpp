// What the examples share and do not teach: the command line and the listening socket.
// blocking_server.cpp and poll_minimal.cpp include it; chapter 01 builds the real thing in
// 01-poll/socket.cpp and options.cpp.
//
//   [--host IPV4] [--port N]      (defaults 127.0.0.1 and 7000; port 0: the kernel picks one)

#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7000;
};

// Reads `--host IPV4` and `--port N` pairs; false on anything else.
inline bool parse_command_line(int argc, char** argv, Options& options) {
  if (argc % 2 == 0) return false;  // a flag without its value
  for (int i = 1; i < argc; i += 2) {
    const std::string_view flag = argv[i];
    const std::string_view value = argv[i + 1];
    const char* end = value.data() + value.size();
    if (flag == "--host") {
      options.host = value;
    } else if (flag == "--port") {
      const auto [stop, error] = std::from_chars(value.data(), end, options.port);
      if (error != std::errc() || stop != end) return false;
    } else {
      return false;
    }
  }
  return true;
}

// Opens the listening socket and prints the line scripts wait for; -1 after an error.
// `type_flags` go to socket() with SOCK_STREAM: SOCK_NONBLOCK for a loop that must never wait.
inline int listen_on(const Options& options, int type_flags) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(options.port);
  if (inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "error: --host %s: not an IPv4 address\n", options.host.c_str());
    return -1;
  }
  const int listener = socket(AF_INET, SOCK_STREAM | type_flags, 0);
  if (listener < 0) {
    std::perror("error: socket");
    return -1;
  }
  const int on = 1;  // a restarted server may bind while old connections linger in TIME-WAIT
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
  socklen_t len = sizeof addr;
  if (bind(listener, reinterpret_cast<const sockaddr*>(&addr), len) != 0 ||
      listen(listener, SOMAXCONN) != 0 ||
      getsockname(listener, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    std::perror("error: bind or listen");
    return -1;
  }
  // With --port 0 the kernel picked the port: getsockname() tells which.
  std::printf("listening on %s:%u\n", options.host.c_str(), unsigned{ntohs(addr.sin_port)});
  std::fflush(stdout);  // a pipe buffers stdout: flush, or the line waits there
  return listener;
}
