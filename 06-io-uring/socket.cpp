#include "socket.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

void Fd::reset(int fd) noexcept {
  // close() may fail (EINTR, EIO), but on Linux the descriptor is released either way, so
  // retrying could close a descriptor that another part of the program has just been given.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

namespace {

std::string errno_text(const std::string& what) {
  return what + ": " + std::strerror(errno);
}

std::string format_address(const sockaddr_storage& addr) {
  char text[INET6_ADDRSTRLEN] = {};
  if (addr.ss_family == AF_INET6) {
    const auto& a6 = reinterpret_cast<const sockaddr_in6&>(addr);
    inet_ntop(AF_INET6, &a6.sin6_addr, text, sizeof text);
    return "[" + std::string(text) + "]:" + std::to_string(ntohs(a6.sin6_port));
  }
  const auto& a4 = reinterpret_cast<const sockaddr_in&>(addr);
  inet_ntop(AF_INET, &a4.sin_addr, text, sizeof text);
  return std::string(text) + ":" + std::to_string(ntohs(a4.sin_port));
}

// Fills addr from a numeric IPv4 or IPv6 address; never a DNS lookup.
socklen_t make_address(const std::string& host, std::uint16_t port, sockaddr_storage& addr) {
  addr = {};
  auto& a4 = reinterpret_cast<sockaddr_in&>(addr);
  if (inet_pton(AF_INET, host.c_str(), &a4.sin_addr) == 1) {
    a4.sin_family = AF_INET;
    a4.sin_port = htons(port);
    return sizeof a4;
  }
  auto& a6 = reinterpret_cast<sockaddr_in6&>(addr);
  if (inet_pton(AF_INET6, host.c_str(), &a6.sin6_addr) == 1) {
    a6.sin6_family = AF_INET6;
    a6.sin6_port = htons(port);
    return sizeof a6;
  }
  throw FatalError("'" + host + "' is not a numeric IPv4 or IPv6 address");
}

void set_option(int fd, int level, int name, const char* what) {
  const int on = 1;
  if (setsockopt(fd, level, name, &on, sizeof on) != 0) throw FatalError(errno_text(what));
}

Fd listen_on(const sockaddr_storage& addr, socklen_t len) {
  Fd fd(socket(addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) throw FatalError(errno_text("socket"));
  // Without SO_REUSEADDR a restarted server cannot bind while connections of the previous run
  // sit in TIME_WAIT, for up to a minute.
  set_option(fd.get(), SOL_SOCKET, SO_REUSEADDR, "setsockopt SO_REUSEADDR");
  // One listener per loop on the same port. Only sockets that all set SO_REUSEPORT, under the
  // same user, may share a port: a port held by anyone else still fails with EADDRINUSE.
  set_option(fd.get(), SOL_SOCKET, SO_REUSEPORT, "setsockopt SO_REUSEPORT");
  if (bind(fd.get(), reinterpret_cast<const sockaddr*>(&addr), len) != 0) {
    throw FatalError(errno_text("bind " + format_address(addr)));
  }
  // The backlog bounds the queue of connections the kernel has completed but we have not yet
  // accepted; a small one refuses or stalls a burst of connects. The kernel caps it at
  // net.core.somaxconn. Each listener of the group has its own queue.
  if (listen(fd.get(), SOMAXCONN) != 0) throw FatalError(errno_text("listen"));
  return fd;
}

}  // namespace

std::vector<Fd> listen_group(const std::string& host, std::uint16_t port, unsigned count) {
  sockaddr_storage addr;
  const socklen_t len = make_address(host, port, addr);
  std::vector<Fd> group;
  group.push_back(listen_on(addr, len));
  if (port == 0) {  // the others join the port the kernel picked for the first
    socklen_t got = len;
    if (getsockname(group[0].get(), reinterpret_cast<sockaddr*>(&addr), &got) != 0) {
      throw FatalError(errno_text("getsockname"));
    }
  }
  while (group.size() < count)
    group.push_back(listen_on(addr, len));
  return group;
}

std::string local_address(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw FatalError(errno_text("getsockname"));
  }
  return format_address(addr);
}

std::string peer_address(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    throw FatalError(errno_text("getpeername"));
  }
  return format_address(addr);
}

Accepted accept_one(int listener) {
  Accepted result;
  int fd;
  do {
    fd = accept4(listener, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) {
    result.error = errno;
    return result;
  }
  result.fd.reset(fd);
  set_no_delay(fd);
  return result;
}

void set_no_delay(int fd) {
  // An echo answers small writes at once. With Nagle's algorithm on, a small reply waits while
  // an earlier one is unacknowledged, and the client's delayed ACK can hold it for tens of
  // milliseconds on a real network (40 ms is Linux's minimum delayed-ACK timeout).
  // setsockopt cannot fail on a TCP socket we have just accepted; if it ever did, the echo would
  // still be correct, only slower, so the client is served either way.
  const int on = 1;
  (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

Fd open_spare_descriptor() {
  return Fd(open("/dev/null", O_RDONLY | O_CLOEXEC));
}
