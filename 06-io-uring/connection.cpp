#include "connection.hpp"

#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <string>
#include <system_error>
#include <utility>
#include <vector>

#include "log.hpp"

namespace {

// How long to stop accepting when the kernel cannot give us a descriptor or memory for a new
// client: long enough not to spin, short enough that service resumes promptly.
constexpr std::chrono::milliseconds kAcceptPause{100};

}  // namespace

Connection::Connection(Reactor& reactor, Fd socket, std::chrono::milliseconds idle_timeout)
    : reactor_(reactor), idle_timeout_(idle_timeout), socket_(std::move(socket)) {
  if (idle_timeout_ > idle_timeout_.zero()) last_moved_ = Clock::now();
  start_receiving();
}

// close() alone would end nothing: a request in flight holds its own reference to the socket,
// and would go on receiving into the ring, or reading bytes this frame no longer owns.
Connection::~Connection() {
  reactor_.stop_waiting_for_buffer(receive_);
  if (receive_.in_flight()) reactor_.abandon(receive_);
  if (send_.in_flight()) {
    // The kernel may still read what it sends: that goes with the request, until its end.
    // (outgoing_ holds bytes only while write_all sends from it.)
    reactor_.abandon(send_,
                     {.keep_alive = std::move(outgoing_.empty() ? delivered_copy_ : outgoing_),
                      .held_buffer = std::exchange(delivered_, std::nullopt),
                      .closes_results = false});
  }
  release_delivered();
  for (const Received& received : received_) {
    if (received.result > 0 && received.copy.empty()) reactor_.give_back(received.buffer);
  }
}

void Connection::start_receiving() {
  // Multishot: one request, then a completion each time bytes arrive, until it ends. It names
  // no buffer: the kernel takes one from the loop's ring when there is something to put in it.
  io_uring_sqe* const sqe = reactor_.prepare(receive_);
  io_uring_prep_recv_multishot(sqe, socket_.get(), nullptr, 0, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = reactor_.buffers().group();
  receiving_ = Receiving::kArmed;
}

void Connection::Receive::on_completion(int result, std::uint32_t flags) {
  connection.on_received(result, flags);
}

void Connection::on_received(int result, std::uint32_t flags) {
  const bool more = flags & IORING_CQE_F_MORE;
  if (result > 0) {
    const auto buffer = static_cast<std::uint16_t>(flags >> IORING_CQE_BUFFER_SHIFT);
    if (buffers_held() < kMaxBuffersHeld) {
      received_.push_back({result, buffer, {}});
      ++held_;
    } else {
      // Over the cap (received before our cancel took effect): the bytes move to memory of
      // this connection's own, and the buffer goes back to the ring at once.
      const std::span<const char> bytes = reactor_.buffers().bytes(buffer, result);
      received_.push_back({result, buffer, {bytes.begin(), bytes.end()}});
      reactor_.give_back(buffer);
    }
    if (!more) {
      // It ended on its own (a full completion queue ends multishot requests): read_some asks
      // again once it has handed out what came.
      receiving_ = Receiving::kStopped;
    } else if (receiving_ == Receiving::kArmed && buffers_held() >= kMaxBuffersHeld) {
      reactor_.cancel(receive_);  // backpressure: see kMaxBuffersHeld
      receiving_ = Receiving::kStopping;
    }
  } else if (result == -ENOBUFS && receiving_ == Receiving::kArmed) {
    // The ring ran dry: every buffer is held by some connection. Asked again when one comes
    // back (and not at once: the completions that took the buffers may come later in this
    // batch, and asking again before they are in would only fail again, every round).
    receiving_ = Receiving::kStarved;
    reactor_.wait_for_buffer(receive_);
  } else if (result == -ECANCELED || result == -ENOBUFS || result == -EINTR) {
    receiving_ = Receiving::kStopped;  // our cancel, or it ended while we were cancelling it
  } else {
    received_.push_back({result, 0, {}});  // the EOF (0) or the connection's failure: the last word
    receiving_ = Receiving::kEnded;
  }
  if (reader_) reactor_.schedule(std::exchange(reader_, {}));
}

bool Connection::delivered_holds(std::span<const char> bytes) const {
  if (delivered_) return reactor_.buffers().holds(*delivered_, bytes);
  const std::less_equal<const char*> at_or_before;
  return !delivered_copy_.empty() && at_or_before(delivered_copy_.data(), bytes.data()) &&
         at_or_before(bytes.data() + bytes.size(), delivered_copy_.data() + delivered_copy_.size());
}

void Connection::release_delivered() {
  if (delivered_) reactor_.give_back(*std::exchange(delivered_, std::nullopt));
  std::vector<char>().swap(delivered_copy_);
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
  // What read_some returned last has been dealt with: its buffer goes back to the ring.
  release_delivered();
  for (;;) {
    if (!received_.empty()) {
      Received& next = received_.front();
      // The EOF or a failure stays at the front: every later read_some sees it again.
      if (next.result == 0) co_return std::span<const char>();
      if (next.result < 0) throw std::system_error(-next.result, std::generic_category(), "recv");
      const auto size = static_cast<std::size_t>(next.result);
      std::span<const char> bytes;
      if (next.copy.empty()) {
        delivered_ = next.buffer;
        --held_;
        bytes = reactor_.buffers().bytes(next.buffer, size);
      } else {
        delivered_copy_ = std::move(next.copy);
        bytes = delivered_copy_;
      }
      received_.erase(received_.begin());
      reactor_.traffic().received += size;
      if (idle_timeout_ > idle_timeout_.zero()) last_moved_ = Clock::now();
      co_return bytes;
    }
    // All handed out: receive again, if backpressure (or a full completion queue) stopped it.
    if (receiving_ == Receiving::kStopped) start_receiving();
    if (!co_await reactor_.wait(reader_, idle_deadline())) throw idle_error();
  }
}

void Connection::Send::on_completion(int result, std::uint32_t) {
  connection.sent_ = result;
  if (connection.writer_) connection.reactor_.schedule(std::exchange(connection.writer_, {}));
}

Task<void> Connection::write_all(std::span<const char> bytes) {
  // The kernel reads the bytes after this coroutine has suspended, and, if the connection goes
  // first, after it has gone: they must be where ~Connection can hand them over. What
  // read_some returned is (the buffer stays this connection's until the next read_some).
  if (!bytes.empty() && !delivered_holds(bytes)) {
    outgoing_.assign(bytes.begin(), bytes.end());
    bytes = outgoing_;
  }
  while (!bytes.empty()) {
    // MSG_NOSIGNAL: EPIPE instead of SIGPIPE, whose default action would end the server.
    io_uring_prep_send(reactor_.prepare(send_), socket_.get(), bytes.data(), bytes.size(),
                       MSG_NOSIGNAL);
    // At the idle deadline the send is still in flight: ~Connection abandons it.
    if (!co_await reactor_.wait(writer_, idle_deadline())) throw idle_error();
    if (sent_ < 0) {
      if (sent_ == -EINTR) continue;
      throw std::system_error(-sent_, std::generic_category(), "send");
    }
    // A short send (the socket's buffer filled up): the rest goes in the next request.
    const auto sent = static_cast<std::size_t>(sent_);
    bytes = bytes.subspan(sent);
    reactor_.traffic().sent += sent;
    if (sent > 0 && idle_timeout_ > idle_timeout_.zero()) last_moved_ = Clock::now();
  }
  std::vector<char>().swap(outgoing_);  // an idle connection holds nothing
}

Listener::Listener(Reactor& reactor, Fd socket)
    : reactor_(reactor), socket_(std::move(socket)), spare_(open_spare_descriptor()) {
  if (!spare_) throw FatalError(std::string("open /dev/null: ") + std::strerror(errno));
}

Listener::~Listener() {
  // Closing the socket would not end the accept: the request holds the socket itself.
  if (accept_.in_flight())
    reactor_.abandon(accept_, {.keep_alive = {}, .held_buffer = {}, .closes_results = true});
}

void Listener::start_accepting() {
  // Multishot: one request, then a completion with a new descriptor for each client.
  io_uring_prep_multishot_accept(reactor_.prepare(accept_), socket_.get(), nullptr, nullptr,
                                 SOCK_NONBLOCK | SOCK_CLOEXEC);
}

void Listener::Accept::on_completion(int result, std::uint32_t) {
  // Without IORING_CQE_F_MORE the request has ended (an error, our cancel, a full completion
  // queue): accept() asks again.
  if (result >= 0) {
    listener.accepted_.emplace_back(result);
  } else if (result != -ECANCELED) {
    listener.failed_ = -result;
  }
  if (listener.waiter_) listener.reactor_.schedule(std::exchange(listener.waiter_, {}));
}

void Listener::stop() {
  stopping_ = true;
  // Whatever the accept request took stays queued for accept(); the kernel's queue is read
  // once the request has ended.
  if (accept_.in_flight()) reactor_.cancel(accept_);
  if (waiter_) reactor_.schedule(std::exchange(waiter_, {}));
}

Task<Fd> Listener::accept() {
  for (;;) {
    if (!accepted_.empty()) {
      // Shed clients count too: a connect flood must not keep the loop to itself.
      if (++accepts_this_round_ > kAcceptsPerRound) {
        accepts_this_round_ = 0;
        co_await reactor_.yield();
        continue;
      }
      Fd client = std::move(accepted_.front());
      accepted_.pop_front();
      set_no_delay(client.get());
      co_return client;
    }
    if (const int error = std::exchange(failed_, 0)) {
      switch (error) {
        case EMFILE:
        case ENFILE:
          warn_out_of_descriptors(error);
          if (!shed_one_client()) co_await reactor_.sleep_for(kAcceptPause);
          continue;
        case ENOBUFS:
        case ENOMEM:
          co_await reactor_.sleep_for(kAcceptPause);  // the kernel is short of memory
          continue;
        case EAGAIN:
#if EAGAIN != EWOULDBLOCK
        case EWOULDBLOCK:
#endif
        case EINTR:
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
          throw FatalError(std::string("accept: ") + std::strerror(error));
      }
    }
    if (stopping_) {
      if (accept_.in_flight()) {
        co_await reactor_.wait(waiter_, kNever);  // for the cancelled request's end
        continue;
      }
      // Clients the kernel queued since: one accept each, until it says none is left.
      Accepted client = accept_one(socket_.get());
      if (client.fd) co_return std::move(client.fd);
      if (client.error == EAGAIN || client.error == EWOULDBLOCK) co_return Fd();
      failed_ = client.error;
      continue;
    }
    accepts_this_round_ = 0;
    if (!accept_.in_flight()) start_accepting();
    co_await reactor_.wait(waiter_, kNever);
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
// the caller should back off: it did not help, or nobody was waiting. A multishot accept asked
// again at the limit would fail at once, whether or not anybody waits: accept() takes a
// descriptor before it looks at the queue.
bool Listener::shed_one_client() {
  if (!spare_) spare_ = open_spare_descriptor();
  if (!spare_) return false;
  spare_.reset();
  Accepted doomed = accept_one(socket_.get());
  const bool nobody_waited = doomed.error == EAGAIN || doomed.error == EWOULDBLOCK;
  const bool still_out = doomed.error == EMFILE || doomed.error == ENFILE;
  doomed.fd.reset();  // before taking the spare back: it holds the one free slot
  spare_ = open_spare_descriptor();
  return !nobody_waited && !still_out && spare_;
}

// Blocking, unlike every other descriptor here: a read through the ring of an O_NONBLOCK file
// completes at once with EAGAIN instead of waiting for a value.
Wakeup::Wakeup(Reactor& reactor) : reactor_(reactor), event_(eventfd(0, EFD_CLOEXEC)) {
  if (!event_) throw FatalError(std::string("eventfd: ") + std::strerror(errno));
}

Wakeup::~Wakeup() {
  // The kernel writes the count into count_: it goes with the request.
  if (read_.in_flight())
    reactor_.abandon(read_, {.keep_alive = std::move(count_), .held_buffer = {}});
}

void Wakeup::notify() {
  const std::uint64_t one = 1;
  // Blocks only when the counter would overflow: it is then far from zero, and the loop will
  // wake anyway. A signal can interrupt it: try again.
  while (::write(event_.get(), &one, sizeof one) < 0 && errno == EINTR) {
  }
}

void Wakeup::Read::on_completion(int result, std::uint32_t) {
  wakeup.result_ = result;
  if (result == sizeof(std::uint64_t)) wakeup.notified_ = true;  // the read reset the counter
  if (wakeup.waiter_) wakeup.reactor_.schedule(std::exchange(wakeup.waiter_, {}));
}

Task<void> Wakeup::wait() {
  for (;;) {
    if (notified_) {
      notified_ = false;
      co_return;
    }
    // Not one client's failure: a loop that cannot read its requests could never be stopped.
    if (result_ < 0 && result_ != -EINTR && result_ != -ECANCELED) {
      throw FatalError(std::string("read eventfd: ") + std::strerror(-result_));
    }
    if (!read_.in_flight()) {
      io_uring_prep_read(reactor_.prepare(read_), event_.get(), count_.data(),
                         static_cast<unsigned>(count_.size()), 0);
    }
    co_await reactor_.wait(waiter_, kNever);
  }
}
