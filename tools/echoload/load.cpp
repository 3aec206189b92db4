#include "load.hpp"

#include <sys/epoll.h>
#include <sys/socket.h>

#include <cerrno>
#include <iostream>
#include <span>
#include <sstream>
#include <vector>

#include "client.hpp"
#include "clock.hpp"
#include "connect.hpp"
#include "socket.hpp"
#include "stream.hpp"

namespace {

// Bytes asked for per recv(), and the most handed to one send(). 64 KiB moves a bulk echo in few
// calls, and a chunk of 64-byte echoes completes a thousand messages at once.
constexpr std::size_t kChunkBytes = 64 * 1024;

// Sockets reported per epoll_wait(). When more are ready, level-triggered epoll reports them
// again on the next call, so nothing is lost.
constexpr int kEventsPerWait = 256;

// How long the echoes still in flight when the window closes get to come back. A working server
// returns them within milliseconds; a connection still waiting after this lost bytes or hangs.
constexpr std::chrono::seconds kDrainTime{2};

// Descriptors needed beyond one per connection: stdin, stdout, stderr, two epoll instances, and
// a few the C library may open.
constexpr std::uint64_t kSpareDescriptors = 16;

// The tag in epoll_event.data: the index of an active client, or that of an idle connection with
// this bit set.
constexpr std::uint64_t kIdleBit = std::uint64_t{1} << 63;

Clock::duration to_duration(double s) {
  return std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(s));
}

// "2 s", "0.25 s": seconds as the user wrote them, for progress lines.
std::string seconds_text(double s) {
  std::ostringstream text;
  text << s << " s";
  return text.str();
}

// Why recv() ended a connection, from what it returned and its errno.
std::string recv_failure(ssize_t n, int error) {
  return n == 0 ? "closed by the server" : errno_message("recv", error);
}

// The steps of one run, in the order run() takes them. Owns every connection, which it closes
// when it is destroyed, and the result it fills in.
class Engine {
 public:
  explicit Engine(const Options& options);
  RunResult run();

 private:
  void check_descriptor_limit() const;
  void open_idle(const Endpoint& server);
  void open_active(const Endpoint& server);
  void count_connect_failures(const Connections& connections);
  void watch(int fd, std::uint64_t tag);
  void start_sending();
  void wait_and_dispatch(Clock::time_point until);
  ssize_t receive(const Fd& socket);
  void on_idle_event(std::size_t index);
  void on_client_event(Client& client, std::uint32_t events);
  void on_readable(Client& client);
  void on_echo(Client& client, std::span<const std::uint8_t> echo, Clock::time_point now);
  void count_message(Clock::time_point now, Clock::duration round_trip);
  void send_pending(Client& client);
  void update_interest(Client& client);
  bool awaits_echoes() const;
  void count_stalled();
  void count_mismatch(const FirstMismatch& mismatch);
  void count_early_close(std::string what);
  void close_socket(Fd& socket);
  void close_client(Client& client);
  void progress(const std::string& line) const;

  const Options& options_;
  RunResult result_;
  Pattern pattern_;  // borrowed by every client's stream
  Fd epoll_;
  std::vector<Fd> idle_;         // empty entries are closed
  std::vector<Client> clients_;  // clients_[i] has stream i
  std::size_t live_clients_ = 0;
  std::vector<std::uint8_t> recv_buffer_;
  std::vector<std::uint8_t> send_buffer_;  // the stream's next bytes, made up just before send()
  Clock::time_point window_start_;
  Clock::time_point window_end_;
  bool sending_ = true;  // false once the window has closed
};

Engine::Engine(const Options& options)
    : options_(options),
      pattern_(options.seed),
      epoll_(epoll_create1(EPOLL_CLOEXEC)),
      recv_buffer_(kChunkBytes),
      send_buffer_(kChunkBytes) {
  if (!epoll_) throw FatalError(errno_message("epoll_create1", errno));
  result_.options = options;
}

RunResult Engine::run() {
  check_descriptor_limit();
  const Endpoint server = make_endpoint(options_.host, options_.port);
  // 1. Connections: the idle ones first, so the active ones are served among them.
  open_idle(server);
  open_active(server);
  // 2. Load: warm-up, then the measured window; stop early when no active connection is left.
  window_start_ = Clock::now() + to_duration(options_.warmup_s);
  window_end_ = window_start_ + to_duration(options_.duration_s);
  start_sending();
  while (live_clients_ > 0 && Clock::now() < window_end_)
    wait_and_dispatch(window_end_);
  // 3. Drain: send nothing more, but check the echo of every byte already sent.
  sending_ = false;
  const Clock::time_point drain_end = Clock::now() + kDrainTime;
  while (awaits_echoes() && Clock::now() < drain_end)
    wait_and_dispatch(drain_end);
  count_stalled();
  // 4. Every connection is closed when the engine is destroyed, before run_load() returns.
  return std::move(result_);
}

void Engine::check_descriptor_limit() const {
  const std::uint64_t limit = raise_descriptor_limit();
  const std::uint64_t needed = options_.idle + options_.connections + kSpareDescriptors;
  if (needed > limit) {
    throw FatalError(std::to_string(options_.idle) + " idle and " +
                     std::to_string(options_.connections) + " active connections need about " +
                     std::to_string(needed) + " descriptors, the limit is " +
                     std::to_string(limit) + " (ulimit -n)");
  }
}

void Engine::open_idle(const Endpoint& server) {
  if (options_.idle == 0) return;
  progress("connecting to " + server.text + ": " + std::to_string(options_.idle) + " idle");
  Connections opened = connect_many(server, options_.idle);
  count_connect_failures(opened);
  idle_ = std::move(opened.sockets);
  // Watched for reading although they never send: a byte from the server, its EOF or a reset
  // on an idle connection is an error too.
  for (std::size_t i = 0; i < idle_.size(); ++i)
    watch(idle_[i].get(), kIdleBit | i);
}

void Engine::open_active(const Endpoint& server) {
  progress("connecting to " + server.text + ": " + std::to_string(options_.connections) +
           " active");
  Connections opened = connect_many(server, options_.connections);
  count_connect_failures(opened);
  clients_.reserve(opened.sockets.size());
  for (Fd& socket : opened.sockets) {
    if (options_.rcvbuf != 0) {
      // Set after connecting: from then on the window the client advertises stays within it.
      const int bytes = static_cast<int>(options_.rcvbuf);
      if (setsockopt(socket.get(), SOL_SOCKET, SO_RCVBUF, &bytes, sizeof bytes) != 0) {
        throw FatalError(errno_message("setsockopt SO_RCVBUF", errno));
      }
    }
    const std::size_t index = clients_.size();
    watch(socket.get(), index);
    clients_.emplace_back(std::move(socket), index, ByteStream(pattern_, index),
                          MessageFlow(options_.size, options_.depth));
  }
  live_clients_ = clients_.size();
}

void Engine::count_connect_failures(const Connections& connections) {
  result_.errors.connect_failures += connections.failures;
  if (result_.first_error.empty()) result_.first_error = connections.first_failure;
}

void Engine::watch(int fd, std::uint64_t tag) {
  epoll_event event{};
  event.events = EPOLLIN;
  event.data.u64 = tag;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &event) != 0) {
    throw FatalError(errno_message("epoll_ctl ADD", errno));
  }
}

void Engine::start_sending() {
  progress("warming up for " + seconds_text(options_.warmup_s) + ", then measuring for " +
           seconds_text(options_.duration_s));
  for (Client& client : clients_) {
    client.flow.issue(options_.depth);
    send_pending(client);
    update_interest(client);
  }
}

void Engine::wait_and_dispatch(Clock::time_point until) {
  epoll_event events[kEventsPerWait];
  const int ready = epoll_wait(epoll_.get(), events, kEventsPerWait, milliseconds_until(until));
  if (ready < 0 && errno == EINTR) return;  // a signal arrived; the caller checks the clock
  if (ready < 0) throw FatalError(errno_message("epoll_wait", errno));
  for (int i = 0; i < ready; ++i) {
    const std::uint64_t tag = events[i].data.u64;
    if (tag & kIdleBit) {
      on_idle_event(tag & ~kIdleBit);
    } else {
      on_client_event(clients_[tag], events[i].events);
    }
  }
}

// One recv() into the shared buffer. Returns what recv() returned, with its errno.
ssize_t Engine::receive(const Fd& socket) {
  ssize_t n;
  do {
    n = recv(socket.get(), recv_buffer_.data(), recv_buffer_.size(), 0);
  } while (n < 0 && errno == EINTR);  // a signal arrived before any byte: ask again
  return n;
}

// Anything on an idle connection is an error: bytes nobody sent, or the server closing it.
void Engine::on_idle_event(std::size_t index) {
  Fd& socket = idle_[index];
  const ssize_t n = receive(socket);
  const int error = errno;
  if (n < 0 && (error == EAGAIN || error == EWOULDBLOCK)) return;  // stale readiness
  if (n > 0) {
    count_mismatch({index, true, 0, std::nullopt, recv_buffer_[0]});
  } else {
    count_early_close("idle connection " + std::to_string(index) + ": " + recv_failure(n, error));
  }
  close_socket(socket);
}

void Engine::on_client_event(Client& client, std::uint32_t events) {
  // An earlier event of this batch may have closed the client; its socket is empty then.
  if (!client.socket) return;
  // EPOLLERR and EPOLLHUP come whether asked for or not. recv() turns them into the error or
  // the EOF they stand for.
  if (events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(client);
  if (client.socket && (events & EPOLLOUT)) send_pending(client);
  update_interest(client);
}

void Engine::on_readable(Client& client) {
  const ssize_t n = receive(client.socket);
  const int error = errno;
  if (n > 0) {
    // Read the clock once per chunk: every message this chunk completes arrived now.
    on_echo(client, std::span(recv_buffer_).first(static_cast<std::size_t>(n)), Clock::now());
  } else if (n == 0 || (error != EAGAIN && error != EWOULDBLOCK)) {
    // EOF or ECONNRESET: the server closed a connection that we had not finished with.
    count_early_close("connection " + std::to_string(client.index) + ": " + recv_failure(n, error));
    close_client(client);
  }
  // EAGAIN: readiness was stale; wait for the next report.
}

void Engine::on_echo(Client& client, std::span<const std::uint8_t> echo, Clock::time_point now) {
  // Bytes beyond what was sent cannot be an echo: the first of them is reported as a mismatch.
  const std::uint64_t awaited = client.flow.awaited();
  const std::size_t checked = std::min<std::uint64_t>(echo.size(), awaited);
  if (auto bad = client.stream.verify(client.flow.received(), echo.first(checked))) {
    count_mismatch({client.index, false, bad->offset, bad->expected, bad->got});
    close_client(client);
    return;
  }
  if (checked < echo.size()) {
    count_mismatch({client.index, false, client.flow.sent(), std::nullopt, echo[checked]});
    close_client(client);
    return;
  }
  const std::size_t completed = client.flow.on_received(
      echo.size(), now, [&](Clock::duration round_trip) { count_message(now, round_trip); });
  // Keep `depth` messages in flight: one new message for each echo completed.
  if (sending_) client.flow.issue(completed);
  send_pending(client);
}

// Only messages whose echo completes inside the window count, whenever they were sent.
void Engine::count_message(Clock::time_point now, Clock::duration round_trip) {
  if (now < window_start_ || now >= window_end_) return;
  ++result_.messages;
  const auto nanoseconds = std::chrono::duration_cast<std::chrono::nanoseconds>(round_trip);
  result_.round_trips.record(static_cast<std::uint64_t>(nanoseconds.count()));
}

void Engine::send_pending(Client& client) {
  while (sending_ && client.flow.unsent() > 0) {
    const auto chunk =
        std::span(send_buffer_)
            .first(std::min<std::uint64_t>(client.flow.unsent(), send_buffer_.size()));
    client.stream.fill(client.flow.sent(), chunk);
    // MSG_NOSIGNAL: sending on a connection the server has reset would raise SIGPIPE, whose
    // default action kills echoload; with the flag, send() fails with EPIPE instead.
    const ssize_t n = send(client.socket.get(), chunk.data(), chunk.size(), MSG_NOSIGNAL);
    if (n < 0) {
      const int error = errno;
      if (error == EINTR) continue;                         // interrupted: try again
      if (error == EAGAIN || error == EWOULDBLOCK) return;  // full: wait for EPOLLOUT
      // EPIPE, ECONNRESET: the server has closed the connection.
      count_early_close("connection " + std::to_string(client.index) + ": " +
                        errno_message("send", error));
      close_client(client);
      return;
    }
    client.flow.on_sent(static_cast<std::size_t>(n), Clock::now());
    // The kernel took less than offered because the send buffer is full: another send() would
    // only fail with EAGAIN after we made up its bytes again, so wait for EPOLLOUT.
    if (static_cast<std::size_t>(n) < chunk.size()) return;
  }
}

// The interest set of a client follows from its state, here and nowhere else.
void Engine::update_interest(Client& client) {
  if (!client.socket) return;
  // EPOLLIN always: the echo is read as it comes. EPOLLOUT only while bytes wait to be sent: a
  // socket with room in its send buffer is always writable, so level-triggered epoll would
  // report it on every call and the loop would spin.
  const bool wants_writes = sending_ && client.flow.unsent() > 0;
  if (wants_writes == client.watching_writes) return;
  epoll_event event{};
  event.events = EPOLLIN | (wants_writes ? EPOLLOUT : 0u);
  event.data.u64 = client.index;
  if (epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, client.socket.get(), &event) != 0) {
    throw FatalError(errno_message("epoll_ctl MOD", errno));
  }
  client.watching_writes = wants_writes;
}

bool Engine::awaits_echoes() const {
  for (const Client& client : clients_) {
    if (client.socket && client.flow.awaited() > 0) return true;
  }
  return false;
}

void Engine::count_stalled() {
  for (const Client& client : clients_) {
    if (!client.socket || client.flow.awaited() == 0) continue;
    ++result_.errors.stalled;
    if (result_.first_error.empty()) {
      result_.first_error = "connection " + std::to_string(client.index) + ": " +
                            std::to_string(client.flow.awaited()) + " echoed bytes still missing " +
                            std::to_string(kDrainTime.count()) + " s after the window closed";
    }
  }
}

void Engine::count_mismatch(const FirstMismatch& mismatch) {
  ++result_.errors.mismatches;
  if (!result_.first_mismatch) result_.first_mismatch = mismatch;
}

void Engine::count_early_close(std::string what) {
  ++result_.errors.early_closes;
  if (result_.first_error.empty()) result_.first_error = std::move(what);
}

void Engine::close_socket(Fd& socket) {
  // Deregister before closing: epoll watches the open file, which a dup() could keep alive, and
  // it would go on reporting events for a descriptor number we no longer own.
  (void)epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, socket.get(), nullptr);
  socket.reset();
}

void Engine::close_client(Client& client) {
  close_socket(client.socket);
  --live_clients_;
}

void Engine::progress(const std::string& line) const {
  if (!options_.quiet) std::cerr << "echoload: " << line << "\n";
}

}  // namespace

RunResult run_load(const Options& options) {
  return Engine(options).run();
}
