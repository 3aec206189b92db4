#include "connect.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/epoll.h>

#include <algorithm>
#include <cerrno>

#include "clock.hpp"

namespace {

// Connects in flight at once. Each one waits in the server's accept queue until the server
// accepts it. When that queue (at most net.core.somaxconn long, 4096 by default) is full, the
// server's kernel drops new SYNs, and a client sends its SYN again only a second later.
constexpr std::size_t kBatchSize = 256;

// A connect not established by then counts as failed. A dropped SYN is sent again after 1 s,
// then 2 s after that, so this allows two retries; and a server that never answers cannot hang
// the run.
constexpr std::chrono::seconds kConnectTimeout{5};

void note_failure(Connections& result, const Endpoint& server, std::string_view call, int error) {
  if (result.failures++ == 0) {
    result.first_failure = errno_message(std::string(call) + " " + server.text, error);
  }
}

// Starts one non-blocking connect(). The socket comes back connecting or connected; on failure
// it is empty and the failure has been counted.
Fd start_connect(const Endpoint& server, Connections& result) {
  Fd fd(socket(server.address.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) {
    note_failure(result, server, "socket", errno);
    return fd;
  }
  // Nagle's algorithm would hold a small message back while an earlier one is unacknowledged,
  // and the server's delayed ACK can stretch that to 40 ms: every round trip would measure it.
  const int on = 1;
  (void)setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
  const auto* address = reinterpret_cast<const sockaddr*>(&server.address);
  // A non-blocking connect() returns EINPROGRESS: the handshake goes on in the kernel, and the
  // socket turns writable when it has finished, one way or the other.
  if (connect(fd.get(), address, server.length) != 0 && errno != EINPROGRESS) {
    note_failure(result, server, "connect", errno);
    fd.reset();
  }
  return fd;
}

// Waits until every socket of the batch has connected or failed, or until the deadline.
void finish_batch(int epoll_fd, std::vector<Fd>& batch, std::size_t waiting, const Endpoint& server,
                  Connections& result) {
  const auto deadline = Clock::now() + kConnectTimeout;
  epoll_event events[64];
  while (waiting > 0) {
    const int timeout = milliseconds_until(deadline);
    if (timeout == 0) break;
    const int ready = epoll_wait(epoll_fd, events, std::size(events), timeout);
    if (ready < 0 && errno == EINTR) continue;  // a signal arrived; nothing was lost
    if (ready < 0) throw FatalError(errno_message("epoll_wait", errno));
    for (int i = 0; i < ready; ++i) {
      Fd& fd = batch[events[i].data.u64];
      (void)epoll_ctl(epoll_fd, EPOLL_CTL_DEL, fd.get(), nullptr);
      --waiting;
      if (const int error = socket_error(fd.get()); error != 0) {
        note_failure(result, server, "connect", error);
      } else {
        result.sockets.push_back(std::move(fd));
      }
      fd.reset();
    }
  }
  // What is still connecting has timed out. Closing it also takes it out of the epoll set.
  for (const Fd& fd : batch) {
    if (fd) note_failure(result, server, "connect", ETIMEDOUT);
  }
}

void connect_batch(int epoll_fd, const Endpoint& server, std::size_t count, Connections& result) {
  std::vector<Fd> batch;
  batch.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    Fd fd = start_connect(server, result);
    if (!fd) continue;
    // EPOLLOUT reports the end of the handshake; a refused connect adds EPOLLERR, which epoll
    // reports whether asked for or not.
    epoll_event event{};
    event.events = EPOLLOUT;
    event.data.u64 = batch.size();
    if (epoll_ctl(epoll_fd, EPOLL_CTL_ADD, fd.get(), &event) != 0) {
      throw FatalError(errno_message("epoll_ctl ADD", errno));
    }
    batch.push_back(std::move(fd));
  }
  finish_batch(epoll_fd, batch, batch.size(), server, result);
}

}  // namespace

Connections connect_many(const Endpoint& server, std::size_t count) {
  Connections result;
  Fd epoll_fd(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_fd) throw FatalError(errno_message("epoll_create1", errno));
  result.sockets.reserve(count);
  for (std::size_t done = 0; done < count;) {
    const std::size_t batch = std::min(kBatchSize, count - done);
    connect_batch(epoll_fd.get(), server, batch, result);
    done += batch;
  }
  return result;
}
