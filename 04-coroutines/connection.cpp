#include "connection.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <system_error>
#include <vector>

namespace {

// How long to stop accepting when the kernel cannot give us a descriptor or memory for a new
// client: long enough not to spin, short enough that service resumes promptly.
constexpr std::chrono::milliseconds kAcceptPause{100};

std::system_error failure(const char* call) {
  return std::system_error(errno, std::generic_category(), call);
}

}  // namespace

Connection::Connection(Reactor& reactor, Fd socket)
    : reactor_(reactor), socket_(std::move(socket)) {
  reactor_.add(socket_.get(), watch_);
}

Connection::~Connection() {
  reactor_.remove(socket_.get());
}

Task<std::span<const char>> Connection::read_some() {
  const std::span<char> buffer = reactor_.read_buffer();
  for (;;) {
    if (!watch_.readable) {
      reads_this_turn_ = 0;
      co_await WaitFor{watch_.reader};
      continue;
    }
    // Fairness: a client that always has more to send lets everyone else run now and then.
    if (++reads_this_turn_ > kReadsPerTurn) {
      reads_this_turn_ = 0;
      co_await reactor_.yield();
      continue;
    }
    const ssize_t n = recv(socket_.get(), buffer.data(), buffer.size(), 0);
    if (n > 0) {
      const auto size = static_cast<std::size_t>(n);
      // A short read emptied the socket (stage 3's rule), unless the EOF waits behind it.
      if (size < buffer.size() && !watch_.eof_queued) watch_.readable = false;
      co_return buffer.first(size);
    }
    if (n == 0) co_return std::span<const char>();  // EOF: the client half-closed
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw failure("recv");
    watch_.readable = false;  // drained: wait for the next edge
  }
}

Task<void> Connection::write_all(std::span<const char> bytes) {
  std::vector<char> unsent;  // filled only before waiting, and freed with this frame
  while (!bytes.empty()) {
    if (!watch_.writable) {
      // bytes may point into the reactor's read buffer, which the next read of any connection
      // overwrites. Keep our own copy of what is left while we wait.
      if (unsent.empty()) {
        unsent.assign(bytes.begin(), bytes.end());
        bytes = unsent;
      }
      co_await WaitFor{watch_.writer};
      continue;
    }
    // MSG_NOSIGNAL: EPIPE instead of SIGPIPE, whose default action would end the server.
    const ssize_t n = send(socket_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      const auto sent = static_cast<std::size_t>(n);
      if (sent < bytes.size()) watch_.writable = false;  // full: EPOLLOUT reports room
      bytes = bytes.subspan(sent);
      continue;
    }
    if (errno == EINTR) continue;
    if (errno != EAGAIN && errno != EWOULDBLOCK) throw failure("send");
    watch_.writable = false;
  }
}

Listener::Listener(Reactor& reactor, Fd socket)
    : reactor_(reactor), socket_(std::move(socket)), spare_(open_spare_descriptor()) {
  if (!spare_) throw FatalError(std::string("open /dev/null: ") + std::strerror(errno));
  reactor_.add(socket_.get(), watch_);
}

Listener::~Listener() {
  reactor_.remove(socket_.get());
}

Task<Fd> Listener::accept() {
  for (;;) {
    if (!watch_.readable) {
      accepts_this_round_ = 0;
      co_await WaitFor{watch_.reader};
      continue;
    }
    // Shed clients count too: a connect flood must not keep the loop to itself.
    if (++accepts_this_round_ > kAcceptsPerRound) {
      accepts_this_round_ = 0;
      co_await reactor_.yield();
      continue;
    }
    Accepted client = accept_one(socket_.get());
    if (client.fd) co_return std::move(client.fd);
    switch (client.error) {
      case EAGAIN:
#if EAGAIN != EWOULDBLOCK
      case EWOULDBLOCK:
#endif
        watch_.readable = false;  // the queue is empty: the next client is a new edge
        continue;
      case EMFILE:
      case ENFILE:
        if (!shed_one_client()) co_await reactor_.sleep_for(kAcceptPause);
        continue;
      case ENOBUFS:
      case ENOMEM:
        co_await reactor_.sleep_for(kAcceptPause);  // the kernel is short of memory
        continue;
      case ECONNABORTED:
      case EPROTO:
      case EPERM:
      case ENETDOWN:
      case ENOPROTOOPT:
      case EHOSTDOWN:
      case ENONET:
      case EHOSTUNREACH:
      case ENETUNREACH:
      case ETIMEDOUT:
        continue;  // this one client failed before we took it; the next may be fine
      default:
        throw FatalError(std::string("accept: ") + std::strerror(client.error));
    }
  }
}

// Out of descriptors: the spare is given up to accept one waiting client and close it at once
// (it sees its connection closed rather than hanging), then taken back. Returns false when
// that did not help and the caller should back off.
bool Listener::shed_one_client() {
  if (!spare_) spare_ = open_spare_descriptor();
  if (!spare_) return false;
  spare_.reset();
  Accepted doomed = accept_one(socket_.get());
  // accept() takes a descriptor before it looks at the queue: at the limit it says EMFILE
  // even when nobody waits, and only now, with one to spare, can it say the queue is empty.
  if (doomed.error == EAGAIN || doomed.error == EWOULDBLOCK) watch_.readable = false;
  const bool still_out = doomed.error == EMFILE || doomed.error == ENFILE;
  doomed.fd.reset();  // before taking the spare back: it holds the one free slot
  spare_ = open_spare_descriptor();
  return !still_out && spare_;
}
