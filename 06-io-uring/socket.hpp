#pragma once
// Sockets: an owning descriptor and the few socket calls the server makes.

#include <cstdint>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

// Owns one file descriptor and closes it when destroyed. Move-only, so every descriptor has
// exactly one owner, and nothing else in the program calls close().
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
  // Closes the descriptor held now (if any) and takes ownership of `fd`.
  void reset(int fd = -1) noexcept;

 private:
  int fd_ = -1;
};

// A call failed in a way the server cannot carry on from. what() is one line, printed after
// "error: ", that names what we were doing, the call and strerror, for example
// "bind 127.0.0.1:7000: Address already in use".
class FatalError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

// `count` non-blocking, close-on-exec listening sockets bound to the same host:port, where
// host is a numeric IPv4 or IPv6 address: one per event loop. Each has SO_REUSEPORT, so the
// kernel spreads new connections over them. The first is bound to `port` (0: any free one),
// the others to the port it got. Throws FatalError, as when the port is taken by a socket
// outside this group.
std::vector<Fd> listen_group(const std::string& host, std::uint16_t port, unsigned count);

// The address a socket is bound to, as "127.0.0.1:7000" or "[::1]:7000". Throws FatalError.
std::string local_address(int fd);

// The address of the other end of a connected socket, in the same form. Throws FatalError.
std::string peer_address(int fd);

// One accept: a connected socket, or an empty fd and the errno that explains why not.
struct Accepted {
  Fd fd;
  int error = 0;
};

// Turns Nagle's algorithm off on an accepted socket (see accept_one).
void set_no_delay(int fd);

// Accepts one pending client as a non-blocking, close-on-exec socket with TCP_NODELAY set.
// Retries EINTR; every other failure comes back in Accepted::error for the caller to judge.
Accepted accept_one(int listener);

// A descriptor held in reserve for running out of descriptors (see Listener::shed_one_client).
Fd open_spare_descriptor();
