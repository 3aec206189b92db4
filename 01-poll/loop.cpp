#include "loop.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace {

// Bytes asked for per recv(). There is one such buffer for the whole loop, so its size costs
// nothing per connection. 64 KiB moves a bulk transfer in few calls, and it caps what one
// client can make us read (and echo) per round, so a flooding client cannot take a whole round.
constexpr std::size_t kReadBufferSize = 64 * 1024;

// Accept at most this many clients per round: a burst of connects is taken quickly, but a
// connect flood cannot starve the clients already connected.
constexpr int kAcceptsPerRound = 64;

// How long to stop accepting when the kernel cannot give us a descriptor or memory for a new
// client: long enough not to spin, short enough that service resumes promptly.
constexpr std::chrono::milliseconds kAcceptPause{100};

}  // namespace

Loop::Loop(Fd listener)
    : listener_(std::move(listener)),
      spare_(open_spare_descriptor()),
      read_buffer_(kReadBufferSize) {
  if (!spare_) throw FatalError(std::string("open /dev/null: ") + std::strerror(errno));
  pollfds_.push_back({listener_.get(), POLLIN, 0});
}

void Loop::run() {
  for (;;) {
    // 1. Wait until a socket is ready, or until a paused listener is due to resume.
    const int ready = poll(pollfds_.data(), pollfds_.size(), poll_timeout_ms());
    if (ready < 0) {
      if (errno == EINTR) continue;  // a signal interrupted the wait; nothing is lost
      throw FatalError(std::string("poll: ") + std::strerror(errno));
    }
    // 2. New clients, or news of the listener itself. POLLERR, POLLHUP and POLLNVAL come
    //    unasked, paused or not: the listener has failed (or, POLLNVAL, is not open). Only
    //    accept() can say how, and its error ends the loop. Left unhandled, the bit would be
    //    reported again at once, every round: a busy loop that serves nobody.
    resume_accepting_if_due();
    if (pollfds_[kListenerSlot].revents != 0) accept_ready();
    // 3. Clients, from the last to the first: closing one moves the last entry into its slot,
    //    and walking backwards means that entry has already been served this round.
    for (std::size_t i = connections_.size(); i-- > 0;) {
      const short revents = pollfds_[i + 1].revents;
      if (revents != 0) on_client_event(i, revents);
    }
  }
}

void Loop::accept_ready() {
  for (int n = 0; n < kAcceptsPerRound; ++n) {
    Accepted client = accept_one(listener_.get());
    if (client.fd) {
      add_client(std::move(client.fd));
      continue;
    }
    switch (client.error) {
      case EAGAIN:
#if EAGAIN != EWOULDBLOCK
      case EWOULDBLOCK:
#endif
        return;  // the accept queue is empty
      case EMFILE:
      case ENFILE:
        shed_one_client();
        if (accept_paused()) return;
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
        // This one client failed before we took it (accept(2) lists these network errors as
        // worth retrying); the next one in the queue may be fine.
        continue;
      case ENOBUFS:
      case ENOMEM:
        pause_accepting();  // the kernel is short of memory: let it recover
        return;
      default:
        throw FatalError(std::string("accept: ") + std::strerror(client.error));
    }
  }
}

// Out of descriptors (EMFILE: ours; ENFILE: the system's). The client stays in the accept
// queue, so level-triggered poll reports the listener readable again at once: a busy loop
// that serves nobody. Instead, give up the spare descriptor, accept the client and close it
// at once (it sees its connection closed rather than hanging), then take the spare back.
void Loop::shed_one_client() {
  bool still_out = true;
  if (spare_) {
    spare_.reset();
    Accepted doomed = accept_one(listener_.get());
    still_out = doomed.error == EMFILE || doomed.error == ENFILE;
    // Close the doomed client before taking the spare back: it holds the one free slot, and
    // reopening first would fail with EMFILE and leave us without a spare.
    doomed.fd.reset();
    spare_ = open_spare_descriptor();
  }
  // Under ENFILE another process may take the descriptor we released before we get it back.
  // Without a spare, or when even the released one did not let us accept, stop watching the
  // listener for a while rather than spin.
  if (still_out || !spare_) pause_accepting();
}

void Loop::pause_accepting() {
  accept_resumes_at_ = std::chrono::steady_clock::now() + kAcceptPause;
  pollfds_[kListenerSlot].events = 0;
}

void Loop::resume_accepting_if_due() {
  if (!accept_paused() || std::chrono::steady_clock::now() < accept_resumes_at_) return;
  if (!spare_) spare_ = open_spare_descriptor();
  pollfds_[kListenerSlot].events = POLLIN;
}

// A new client joins the end of the table, with no events until the next poll().
void Loop::add_client(Fd socket) {
  pollfds_.push_back({socket.get(), 0, 0});
  connections_.emplace_back(std::move(socket));
  update_interest(connections_.size() - 1);
}

void Loop::on_client_event(std::size_t index, short revents) {
  Connection& conn = connections_[index];
  // POLLNVAL: the descriptor is not open, so this loop closed it and polls it still. That is
  // our bug, not the client's doing, and poll() would report it at once, forever: stop.
  if (revents & POLLNVAL) {
    throw FatalError("poll: client " + std::to_string(conn.fd()) + ": " + std::strerror(EBADF));
  }
  // POLLHUP and POLLERR are reported even though nobody asks for them. They are not handled
  // on their own: the recv() or send() that follows returns the EOF or the error.
  if ((revents & (POLLIN | POLLHUP | POLLERR)) && conn.wants_read()) {
    conn.on_readable(read_buffer_);
  }
  if ((revents & (POLLOUT | POLLHUP | POLLERR)) && conn.wants_write()) conn.on_writable();
  if (conn.wants_close()) {
    close_client(index);
  } else {
    update_interest(index);
  }
}

// The interest set of one client follows from its state, here and nowhere else.
void Loop::update_interest(std::size_t index) {
  const Connection& conn = connections_[index];
  short events = 0;
  // Not reading a client over the backpressure cap makes the kernel buffers fill up and TCP
  // flow control slow the client down, instead of our memory growing without bound.
  if (conn.wants_read()) events |= POLLIN;
  // POLLOUT only while bytes are owed: a socket with room in its send buffer is writable all
  // the time, so POLLOUT left on would wake every poll() at once and spin.
  if (conn.wants_write()) events |= POLLOUT;
  pollfds_[index + 1].events = events;
}

// Closes one client: the last entry moves into its slot, so the table stays dense.
void Loop::close_client(std::size_t index) {
  const std::size_t last = connections_.size() - 1;
  if (index != last) {
    connections_[index] = std::move(connections_[last]);  // the moved-over Fd closes the socket
    pollfds_[index + 1] = pollfds_[last + 1];
  }
  connections_.pop_back();
  pollfds_.pop_back();
}

int Loop::poll_timeout_ms() const {
  if (!accept_paused()) return -1;  // nothing to do until a socket is ready
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(accept_resumes_at_ -
                                                                 std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}
