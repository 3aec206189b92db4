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

// Events taken per epoll_wait. More ready sockets than this are not lost: level-triggered
// epoll reports them again in the next round, and it rotates its ready list, so no socket waits
// behind the others for more than a round or two.
constexpr std::size_t kMaxEventsPerRound = 1024;

// epoll_event.data.ptr of the listener: every other registration points at its Client.
constexpr void* kListenerTag = nullptr;

// epoll_ctl with the event built in place. Returns 0, or the errno of the failure.
int control(int epoll_fd, int op, int fd, std::uint32_t events, void* ptr) {
  epoll_event event{};
  event.events = events;
  event.data.ptr = ptr;
  return epoll_ctl(epoll_fd, op, fd, &event) == 0 ? 0 : errno;
}

// For the calls that fail only if the loop has a bug: a descriptor it does not own, or one it
// did not register.
void control_or_throw(int epoll_fd, int op, int fd, std::uint32_t events, void* ptr) {
  if (const int error = control(epoll_fd, op, fd, events, ptr)) {
    throw FatalError(std::string("epoll_ctl: ") + std::strerror(error));
  }
}

}  // namespace

Loop::Loop(Fd listener)
    : listener_(std::move(listener)),
      spare_(open_spare_descriptor()),
      events_(kMaxEventsPerRound),
      read_buffer_(kReadBufferSize) {
  if (!spare_) throw FatalError(std::string("open /dev/null: ") + std::strerror(errno));
  // The epoll instance: the kernel's interest list and ready list. CLOEXEC, like every other
  // descriptor here, so a program we might exec does not inherit it.
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) throw FatalError(std::string("epoll_create1: ") + std::strerror(errno));
  control_or_throw(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), listener_interest_, kListenerTag);
}

void Loop::run() {
  for (;;) {
    run_once(wait_timeout_ms());
  }
}

void Loop::run_once(int timeout_ms) {
  // 1. Wait until a socket is ready, or until a paused listener is due to resume.
  const int ready =
      epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms);
  if (ready < 0) {
    if (errno == EINTR) return;  // a signal interrupted the wait; nothing is lost
    throw FatalError(std::string("epoll_wait: ") + std::strerror(errno));
  }
  resume_accepting_if_due();
  // 2. The sockets that are ready, and only those.
  dispatch(std::span(events_).first(static_cast<std::size_t>(ready)));
}

void Loop::dispatch(std::span<const epoll_event> events) {
  bool listener_ready = false;
  for (const epoll_event& event : events) {
    if (event.data.ptr == kListenerTag) {
      listener_ready = true;
      continue;
    }
    Client& client = *static_cast<Client*>(event.data.ptr);
    // Closed by an earlier event of this batch: still allocated (see closed_), so reading the
    // flag is safe, but nothing else about it is to be done.
    if (!client.closed) on_client_event(client, event.events);
  }
  // 3. Only now, with no event left that could point at them, free the clients closed above.
  closed_.clear();
  // 4. New clients last, so that they can have the descriptors just freed. Even while
  //    accepting is paused: the listener is then registered for no events, so what came is
  //    EPOLLERR or EPOLLHUP, which come unasked: the listener has failed. Only accept() can
  //    say how, and its error ends the loop. Level-triggered, an error left unhandled would be
  //    reported again at once, every round: a busy loop that serves nobody.
  if (listener_ready) accept_ready();
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
// queue, so level-triggered epoll reports the listener readable again at once: a busy loop
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
  // Registered with no events, the listener is reported only if it fails (EPOLLERR, EPOLLHUP).
  control_or_throw(epoll_.get(), EPOLL_CTL_MOD, listener_.get(), 0, kListenerTag);
  listener_interest_ = 0;
}

void Loop::resume_accepting_if_due() {
  if (!accept_paused() || std::chrono::steady_clock::now() < accept_resumes_at_) return;
  if (!spare_) spare_ = open_spare_descriptor();
  control_or_throw(epoll_.get(), EPOLL_CTL_MOD, listener_.get(), EPOLLIN, kListenerTag);
  listener_interest_ = EPOLLIN;
}

// A new client is registered once, for input; its interest changes only when its state does.
void Loop::add_client(Fd socket) {
  auto client = std::make_unique<Client>(std::move(socket));
  if (const int error =
          control(epoll_.get(), EPOLL_CTL_ADD, client->conn.fd(), EPOLLIN, client.get())) {
    // ENOSPC: this user has reached fs.epoll.max_user_watches; ENOMEM: the kernel is short of
    // memory. Either way this one client cannot be watched: close it (the unique_ptr does)
    // and carry on serving the others.
    if (error == ENOSPC || error == ENOMEM) return;
    throw FatalError(std::string("epoll_ctl: ") + std::strerror(error));
  }
  client->interest = EPOLLIN;
  const auto slot = static_cast<std::size_t>(client->conn.fd());
  if (slot >= clients_.size()) clients_.resize(slot + 1);
  clients_[slot] = std::move(client);
}

void Loop::on_client_event(Client& client, std::uint32_t events) {
  Connection& conn = client.conn;
  // EPOLLHUP and EPOLLERR are reported even though nobody asks for them. They are not handled
  // on their own: the recv() or send() that follows returns the EOF or the error.
  if ((events & (EPOLLIN | EPOLLHUP | EPOLLERR)) && conn.wants_read()) {
    conn.on_readable(read_buffer_);
  }
  if ((events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) && conn.wants_write()) conn.on_writable();
  if (conn.wants_close()) {
    close_client(client);
  } else {
    update_interest(client);
  }
}

// The interest set of one client follows from its state, here and nowhere else. The kernel
// keeps it between rounds, so a system call is needed only when it changes: for an echo that
// is when a send() falls short (EPOLLOUT on) and when the owed bytes are gone (EPOLLOUT off).
void Loop::update_interest(Client& client) {
  const Connection& conn = client.conn;
  std::uint32_t events = 0;
  // Not reading a client over the backpressure cap makes the kernel buffers fill up and TCP
  // flow control slow the client down, instead of our memory growing without bound.
  if (conn.wants_read()) events |= EPOLLIN;
  // EPOLLOUT only while bytes are owed: a socket with room in its send buffer is writable all
  // the time, so level-triggered EPOLLOUT left on would end every epoll_wait at once and spin.
  if (conn.wants_write()) events |= EPOLLOUT;
  if (events == client.interest) return;
  control_or_throw(epoll_.get(), EPOLL_CTL_MOD, conn.fd(), events, &client);
  client.interest = events;
}

// Closes one client: deregistered first, its memory kept until the end of the batch.
void Loop::close_client(Client& client) {
  // The interest list holds the open file description, not the descriptor number. close()
  // removes the registration only when no other descriptor refers to that description (a
  // dup(), or a child that inherited it), so a registration left behind would keep reporting
  // events carrying a pointer to a freed Client. Deregister explicitly, before closing.
  control_or_throw(epoll_.get(), EPOLL_CTL_DEL, client.conn.fd(), 0, nullptr);
  client.closed = true;
  auto& slot = clients_[static_cast<std::size_t>(client.conn.fd())];
  closed_.push_back(std::move(slot));  // the descriptor closes when closed_ is cleared
}

int Loop::wait_timeout_ms() const {
  if (!accept_paused()) return -1;  // nothing to do until a socket is ready
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(accept_resumes_at_ -
                                                                 std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}
