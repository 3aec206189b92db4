#include "loop.hpp"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>
#include <string>

namespace {

// How long to stop accepting when the kernel cannot give us a descriptor or memory for a new
// client: long enough not to spin, short enough that service resumes promptly.
constexpr std::chrono::milliseconds kAcceptPause{100};

// Events taken per epoll_wait. More ready sockets than this are not lost: edge-triggered
// epoll keeps the ones it could not report on its ready list for the next call.
constexpr std::size_t kMaxEventsPerRound = 1024;

// epoll_event.data.ptr of the listener: every other registration points at its Client.
constexpr void* kListenerTag = nullptr;

// What every client is registered for, once, at accept. EPOLLET: report changes, not states.
// EPOLLOUT can stay in the set: with edge triggering, room wakes the loop only when it frees up
// after a send() found the buffer full. Other reports carry EPOLLOUT too while there is room,
// which costs nothing: it is noted, and a client that owes nothing has no work. EPOLLRDHUP:
// the client's EOF is reported as such, so its turn reads up to it instead of stopping at the
// bytes before it.
constexpr std::uint32_t kClientEvents = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET;

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

Loop::Loop(Fd listener, std::size_t read_buffer_size)
    : listener_(std::move(listener)),
      spare_(open_spare_descriptor()),
      events_(kMaxEventsPerRound),
      read_buffer_(read_buffer_size) {
  if (!spare_) throw FatalError(std::string("open /dev/null: ") + std::strerror(errno));
  // The epoll instance: the kernel's interest list and ready list. CLOEXEC, like every other
  // descriptor here, so a program we might exec does not inherit it.
  epoll_.reset(epoll_create1(EPOLL_CLOEXEC));
  if (!epoll_) throw FatalError(std::string("epoll_create1: ") + std::strerror(errno));
  // Edge-triggered too: reported when clients arrive, then accepted until EAGAIN. Pausing
  // (out of descriptors) only means not calling accept() for a while: no epoll_ctl.
  control_or_throw(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), EPOLLIN | EPOLLET, kListenerTag);
}

void Loop::run() {
  for (;;) {
    run_once(wait_timeout_ms());
  }
}

void Loop::run_once(int timeout_ms) {
  // 1. Wait until a socket is ready, unless work is left from the last round (then only look).
  const int ready =
      epoll_wait(epoll_.get(), events_.data(), static_cast<int>(events_.size()), timeout_ms);
  if (ready < 0) {
    if (errno == EINTR) return;  // a signal interrupted the wait; nothing is lost
    throw FatalError(std::string("epoll_wait: ") + std::strerror(errno));
  }
  resume_accepting_if_due();
  // 2. What changed since the last wait, and what is left from the last round.
  dispatch(std::span(events_).first(static_cast<std::size_t>(ready)));
}

void Loop::dispatch(std::span<const epoll_event> events) {
  // 3. Events only record what the kernel said: no client is served, or closed, while the
  // batch is read, so no event of the batch can point at a client already freed.
  for (const epoll_event& event : events) {
    if (event.data.ptr == kListenerTag) {
      // EPOLLIN, or EPOLLERR or EPOLLHUP, which come unasked when the listener has failed:
      // either way accept() is next, and its error then ends the loop. Reported once, the
      // edge is kept here, across a pause too.
      listener_ready_ = true;
    } else {
      note_event(*static_cast<Client*>(event.data.ptr), event.events);
    }
  }
  // 4. One turn for every client with work, in the order they became ready.
  serve_ready();
  // 5. New clients last, so that they can have the descriptors of the clients just closed.
  if (listener_ready_ && !accept_paused()) accept_ready();
}

void Loop::note_event(Client& client, std::uint32_t events) {
  Connection& conn = client.conn;
  // EPOLLHUP and EPOLLERR are reported even though nobody asks for them. Like EPOLLRDHUP, they
  // are states: a report woken by something else later would carry them again, but nothing
  // wakes the loop for them again. So they are kept until the recv() or send() that returns them.
  const bool eof_queued = events & (EPOLLRDHUP | EPOLLHUP | EPOLLERR);
  if ((events & EPOLLIN) || eof_queued) conn.mark_readable(eof_queued);
  if (events & (EPOLLOUT | EPOLLHUP | EPOLLERR)) conn.mark_writable();
  // An event can bring nothing to do: EPOLLOUT for a client that owes nothing, for example.
  if (conn.has_work()) enqueue(client);
}

void Loop::enqueue(Client& client) {
  if (client.queued) return;  // once per round, however many events name it
  client.queued = true;
  ready_.push_back(&client);
}

void Loop::serve_ready() {
  serving_.swap(ready_);  // ready_ is now empty, to collect the clients with work left over
  for (Client* client : serving_) {
    client->queued = false;
    Connection& conn = client->conn;
    conn.serve(read_buffer_, kReadsPerTurn);
    if (conn.wants_close()) {
      close_client(*client);  // nothing refers to it any more: freed now
    } else if (conn.has_work()) {
      enqueue(*client);  // the budget ran out with bytes still to read: next round
    }
  }
  serving_.clear();
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
        // The accept queue is empty: the next client to connect is a new edge.
        listener_ready_ = false;
        return;
      case EMFILE:
      case ENFILE:
        shed_one_client();
        if (accept_paused() || !listener_ready_) return;
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
  // The budget ran out with clients perhaps still queued: listener_ready_ stays set, and the
  // next round (which does not sleep) goes on accepting. No new edge would say so.
}

// Out of descriptors (EMFILE: ours; ENFILE: the system's). The client stays in the accept
// queue, and no new edge will remind us of it: left there, it would wait until another client
// connects. Instead, give up the spare descriptor, accept the client and close it at once (it
// sees its connection closed rather than hanging), then take the spare back.
void Loop::shed_one_client() {
  bool still_out = true;
  if (spare_) {
    spare_.reset();
    Accepted doomed = accept_one(listener_.get());
    still_out = doomed.error == EMFILE || doomed.error == ENFILE;
    // accept() takes a descriptor before it looks at the queue, so at the limit it says
    // EMFILE even when nobody is waiting. Only with one to spare does it say EAGAIN: the
    // queue is empty, and the edge used up.
    if (doomed.error == EAGAIN || doomed.error == EWOULDBLOCK) listener_ready_ = false;
    // Close the doomed client before taking the spare back: it holds the one free slot, and
    // reopening first would fail with EMFILE and leave us without a spare.
    doomed.fd.reset();
    spare_ = open_spare_descriptor();
  }
  // Under ENFILE another process may take the descriptor we released before we get it back.
  // Without a spare, or when even the released one did not let us accept, stop accepting for
  // a while rather than spin.
  if (still_out || !spare_) pause_accepting();
}

// The listener stays registered and its edge remembered (listener_ready_): accepting resumes
// where it stopped, with no new connect needed to wake it.
void Loop::pause_accepting() {
  accept_resumes_at_ = std::chrono::steady_clock::now() + kAcceptPause;
  accept_paused_ = true;
}

void Loop::resume_accepting_if_due() {
  if (!accept_paused() || std::chrono::steady_clock::now() < accept_resumes_at_) return;
  if (!spare_) spare_ = open_spare_descriptor();
  accept_paused_ = false;
}

// A new client is registered once, for everything; the registration never changes. If bytes
// (or its EOF) arrived before this call, the kernel reports them at the next wait: a socket
// that is ready when added counts as an edge.
void Loop::add_client(Fd socket) {
  auto client = std::make_unique<Client>(std::move(socket));
  if (const int error =
          control(epoll_.get(), EPOLL_CTL_ADD, client->conn.fd(), kClientEvents, client.get())) {
    // ENOSPC: this user has reached fs.epoll.max_user_watches; ENOMEM: the kernel is short of
    // memory. Either way this one client cannot be watched: close it (the unique_ptr does)
    // and carry on serving the others.
    if (error == ENOSPC || error == ENOMEM) return;
    throw FatalError(std::string("epoll_ctl: ") + std::strerror(error));
  }
  const auto slot = static_cast<std::size_t>(client->conn.fd());
  if (slot >= clients_.size()) clients_.resize(slot + 1);
  clients_[slot] = std::move(client);
}

// Closes one client: deregistered first, then freed along with its socket.
void Loop::close_client(Client& client) {
  // The interest list holds the open file description, not the descriptor number. close()
  // removes the registration only when no other descriptor refers to that description (a
  // dup(), or a child that inherited it), so a registration left behind would keep reporting
  // events carrying a pointer to a freed Client. Deregister explicitly, before closing.
  control_or_throw(epoll_.get(), EPOLL_CTL_DEL, client.conn.fd(), 0, nullptr);
  clients_[static_cast<std::size_t>(client.conn.fd())].reset();
}

int Loop::wait_timeout_ms() const {
  // Work left over (a client's budget ran out, or the accept budget did): look, do not sleep.
  if (!ready_.empty() || (listener_ready_ && !accept_paused())) return 0;
  if (!accept_paused()) return -1;  // nothing to do until a socket is ready
  const auto left = std::chrono::ceil<std::chrono::milliseconds>(accept_resumes_at_ -
                                                                 std::chrono::steady_clock::now());
  return left.count() > 0 ? static_cast<int>(left.count()) : 0;
}
