#include "socket.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/resource.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

void Fd::reset(int fd) noexcept {
  // On Linux close() releases the descriptor even when it reports EINTR, so it is never retried:
  // a retry could close a descriptor that has meanwhile been handed out again.
  if (fd_ >= 0) ::close(fd_);
  fd_ = fd;
}

std::string errno_message(std::string_view what, int error) {
  return std::string(what) + ": " + std::strerror(error);
}

Endpoint make_endpoint(const std::string& host, std::uint16_t port) {
  Endpoint endpoint;
  auto& v4 = reinterpret_cast<sockaddr_in&>(endpoint.address);
  auto& v6 = reinterpret_cast<sockaddr_in6&>(endpoint.address);
  const std::string port_text = std::to_string(port);
  if (inet_pton(AF_INET, host.c_str(), &v4.sin_addr) == 1) {
    v4.sin_family = AF_INET;
    v4.sin_port = htons(port);
    endpoint.length = sizeof v4;
    endpoint.text = host + ":" + port_text;
  } else if (inet_pton(AF_INET6, host.c_str(), &v6.sin6_addr) == 1) {
    v6.sin6_family = AF_INET6;
    v6.sin6_port = htons(port);
    endpoint.length = sizeof v6;
    endpoint.text = "[" + host + "]:" + port_text;
  } else {
    throw FatalError("'" + host + "' is not a numeric IPv4 or IPv6 address");
  }
  return endpoint;
}

std::uint64_t raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) {
    throw FatalError(errno_message("getrlimit RLIMIT_NOFILE", errno));
  }
  if (limit.rlim_cur < limit.rlim_max) {
    rlimit raised = limit;
    raised.rlim_cur = limit.rlim_max;
    // A hard limit above fs.nr_open (or RLIM_INFINITY) makes setrlimit fail with EPERM; the soft
    // limit we already have then stays in force, and the caller judges whether it is enough.
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

int socket_error(int fd) {
  int error = 0;
  socklen_t length = sizeof error;
  if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &error, &length) != 0) return errno;
  return error;
}
