// A blocking echo server that serves one client at a time.
//
//   blocking_server [--host IPV4] [--port N]      (defaults 127.0.0.1 and 7000; port 0: any)
//
// The introduction's seed: accept a client, echo what it sends until it closes, then accept
// the next. Every call waits, so while one client is connected the next ones wait in the
// kernel's accept queue. Most error handling is left out on purpose: chapter 01 adds it.

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdio>
#include <string>
#include <string_view>

namespace {

struct Options {
  std::string host = "127.0.0.1";
  std::uint16_t port = 7000;
};

// Reads `--host IPV4` and `--port N` pairs; false on anything else.
bool parse_command_line(int argc, char** argv, Options& options) {
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
int listen_on(const Options& options) {
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(options.port);
  if (inet_pton(AF_INET, options.host.c_str(), &addr.sin_addr) != 1) {
    std::fprintf(stderr, "error: --host %s: not an IPv4 address\n", options.host.c_str());
    return -1;
  }
  const int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) {
    std::perror("error: socket");
    return -1;
  }
  const int on = 1;
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

// Writes all `n` bytes. A blocking write waits for room, but a signal can still cut it short.
bool write_all(int fd, const char* data, ssize_t n) {
  while (n > 0) {
    const ssize_t sent = write(fd, data, static_cast<std::size_t>(n));
    if (sent <= 0) return false;
    data += sent;
    n -= sent;
  }
  return true;
}

}  // namespace

int main(int argc, char** argv) {
  Options options;
  if (!parse_command_line(argc, argv, options)) {
    std::fputs("usage: blocking_server [--host IPV4] [--port N]\n", stderr);
    return 2;
  }
  const int listener = listen_on(options);
  if (listener < 0) return 1;
  for (;;) {
    const int client = accept(listener, nullptr, nullptr);  // waits for a client
    if (client < 0) continue;
    char buffer[4096];
    ssize_t n;
    while ((n = read(client, buffer, sizeof buffer)) > 0) {  // waits for this client's bytes
      if (!write_all(client, buffer, n)) break;              // waits until they all fit
    }
    close(client);  // at end-of-file or an error; then the next client
  }
}
