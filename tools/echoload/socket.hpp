#pragma once
// Sockets: an owning descriptor, the server's address, and the descriptor limit.

#include <sys/socket.h>

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

// Owns one file descriptor and closes it when destroyed. Move-only: each descriptor has one
// owner, and nothing else in echoload calls close().
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) noexcept : fd_(fd) {}
  Fd(Fd&& other) noexcept : fd_(std::exchange(other.fd_, -1)) {}
  Fd& operator=(Fd&& other) noexcept {
    reset(std::exchange(other.fd_, -1));
    return *this;
  }
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd() { reset(); }

  int get() const noexcept { return fd_; }
  explicit operator bool() const noexcept { return fd_ >= 0; }
  // Closes the descriptor held now, if any, and takes `fd` instead.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// Setting up the run failed; what() is one line for after "error: ", naming what we were doing,
// the call and strerror, e.g. "epoll_create1: Too many open files".
class FatalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// "what: strerror(error)", the shape of every system error echoload reports.
std::string errno_message(std::string_view what, int error);

// Where the server listens: a numeric IPv4 or IPv6 address and a port, ready for connect().
struct Endpoint {
  sockaddr_storage address{};
  socklen_t length = 0;
  std::string text;  // "127.0.0.1:7000" or "[::1]:7000", for messages
};

// Never a DNS lookup: host must be numeric. Throws FatalError otherwise.
Endpoint make_endpoint(const std::string& host, std::uint16_t port);

// Raises the soft limit on open descriptors to the hard limit, as far as the kernel allows, and
// returns the soft limit now in force.
std::uint64_t raise_descriptor_limit();

// The pending error of a socket (SO_ERROR), which also clears it: how a non-blocking connect()
// reports its outcome once the socket turns writable.
int socket_error(int fd);
