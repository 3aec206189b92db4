#include "connection.hpp"

#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "log.hpp"

namespace {

// How long to stop accepting when the kernel cannot give us a descriptor or memory for a new
// client: long enough not to spin, short enough that service resumes promptly.
constexpr std::chrono::milliseconds kAcceptPause{100};

std::system_error failure(const char* call) {
  return std::system_error(errno, std::generic_category(), call);
}

}  // namespace

Connection::Connection(Reactor& reactor, Fd socket, std::chrono::milliseconds idle_timeout)
    : reactor_(reactor), socket_(std::move(socket)), idle_timeout_(idle_timeout) {
  if (idle_timeout_ > idle_timeout_.zero()) last_moved_ = Clock::now();
  reactor_.add(socket_.get(), watch_);
}

Connection::~Connection() {
  reactor_.remove(socket_.get());
}

Clock::time_point Connection::idle_deadline() const {
  // Exact, not a guess: while this coroutine waits, nothing else reads or writes its socket,
  // so no byte can move before the wait ends.
  return idle_timeout_ > idle_timeout_.zero() ? last_moved_ + idle_timeout_ : kNever;
}

IdleTimeout Connection::idle_error() const {
  return IdleTimeout("idle for " + std::to_string(idle_timeout_.count()) + " ms");
}

Task<std::span<const char>> Connection::read_some() {
  const std::span<char> buffer = reactor_.read_buffer();
  for (;;) {
    if (!watch_.readable) {
      reads_this_turn_ = 0;
      if (!co_await reactor_.wait(watch_.reader, idle_deadline())) throw idle_error();
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
      reactor_.traffic().received += size;
      if (idle_timeout_ > idle_timeout_.zero()) last_moved_ = Clock::now();
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
      if (!co_await reactor_.wait(watch_.writer, idle_deadline())) throw idle_error();
      continue;
    }
    // MSG_NOSIGNAL: EPIPE instead of SIGPIPE, whose default action would end the server.
    const ssize_t n = send(socket_.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n >= 0) {
      const auto sent = static_cast<std::size_t>(n);
      if (sent < bytes.size()) watch_.writable = false;  // full: EPOLLOUT reports room
      bytes = bytes.subspan(sent);
      reactor_.traffic().sent += sent;
      if (sent > 0 && idle_timeout_ > idle_timeout_.zero()) last_moved_ = Clock::now();
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

void Listener::stop() {
  stopping_ = true;
  // Whatever the last accept() saw, clients may have been queued since: look again, and
  // wake accept() if it waits for the next one.
  watch_.readable = true;
  if (watch_.reader) reactor_.schedule(std::exchange(watch_.reader, {}));
}

Task<Fd> Listener::accept() {
  for (;;) {
    if (!watch_.readable) {
      accepts_this_round_ = 0;
      if (stopping_) co_return Fd();  // stopped, and the queue is empty
      co_await reactor_.wait(watch_.reader, kNever);
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
        warn_out_of_descriptors(client.error);
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

// Says so at most once a second: the fix (a higher `ulimit -n`) is the operator's to make.
void Listener::warn_out_of_descriptors(int error) {
  const auto now = Clock::now();
  if (now - out_of_descriptors_logged_ < std::chrono::seconds(1)) return;
  out_of_descriptors_logged_ = now;
  rlimit limit{};
  getrlimit(RLIMIT_NOFILE, &limit);
  log(LogLevel::kWarn, std::string("accept: ") + std::strerror(error) +
                           ": closing new connections until descriptors free up (the limit, " +
                           "ulimit -n, is " + std::to_string(limit.rlim_cur) + ")");
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

Wakeup::Wakeup(Reactor& reactor)
    : reactor_(reactor), event_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
  if (!event_) throw FatalError(std::string("eventfd: ") + std::strerror(errno));
  reactor_.add(event_.get(), watch_);
}

Wakeup::~Wakeup() {
  reactor_.remove(event_.get());
}

void Wakeup::notify() {
  const std::uint64_t one = 1;
  // Fails only when the counter would overflow (EAGAIN): it is then far from zero, and the
  // loop will wake anyway.
  while (::write(event_.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
}

Task<void> Wakeup::wait() {
  for (;;) {
    std::uint64_t count = 0;
    if (::read(event_.get(), &count, sizeof count) == sizeof count) co_return;  // resets it
    if (errno == EINTR) continue;
    // Not one client's failure: a loop that cannot read its requests could never be stopped.
    if (errno != EAGAIN) throw FatalError(std::string("read eventfd: ") + std::strerror(errno));
    watch_.readable = false;
    co_await reactor_.wait(watch_.reader, kNever);
  }
}
