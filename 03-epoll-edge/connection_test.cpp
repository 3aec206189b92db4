#include "connection.hpp"

#include <sys/ioctl.h>
#include <sys/socket.h>

#include <doctest/doctest.h>

#include <cerrno>
#include <string>
#include <vector>

namespace {

// A connected pair of non-blocking stream sockets: `server` becomes the Connection,
// `client` plays the remote peer.
struct SocketPair {
  Fd server;
  Fd client;
};

SocketPair make_pair() {
  int fds[2];
  REQUIRE(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) == 0);
  return {Fd(fds[0]), Fd(fds[1])};
}

// The test plays epoll: it reports the socket readable, and the connection takes a turn of
// one recv(). Reported whether or not bytes came, as a level-triggered loop would: a report
// with nothing behind it costs one recv() that says EAGAIN.
void read_turn(Connection& conn, std::span<char> read_buffer) {
  conn.mark_readable(false);
  conn.serve(read_buffer, 1);
}

// The socket reported writable: a turn that only sends what is owed.
void write_turn(Connection& conn) {
  conn.mark_writable();
  conn.serve({}, 0);
}

std::string pattern(std::size_t size) {
  std::string bytes(size, '\0');
  for (std::size_t i = 0; i < size; ++i)
    bytes[i] = static_cast<char>((i * 7 + i / 251) % 256);
  return bytes;
}

// Writes as much of `bytes` from `from` as the socket takes now; returns how much.
std::size_t write_some(const Fd& from, std::string_view bytes) {
  const ssize_t n = send(from.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL);
  if (n < 0) {
    REQUIRE((errno == EAGAIN || errno == EWOULDBLOCK));
    return 0;
  }
  return static_cast<std::size_t>(n);
}

// The client writes all of `bytes` and reads nothing, while the connection reads (and echoes)
// whenever it wants to. Returns how many bytes the client managed to write.
std::size_t send_all_without_reading(const Fd& client, Connection& conn,
                                     std::span<char> read_buffer, std::string_view bytes) {
  std::size_t written = 0;
  for (int rounds = 0; written < bytes.size() && rounds < 100000; ++rounds) {
    written += write_some(client, bytes.substr(written));
    if (conn.wants_read()) read_turn(conn, read_buffer);
  }
  return written;
}

// Reads everything available now.
std::string read_available(const Fd& from) {
  std::string got;
  char chunk[65536];
  for (;;) {
    const ssize_t n = recv(from.get(), chunk, sizeof chunk, 0);
    if (n <= 0) return got;
    got.append(chunk, static_cast<std::size_t>(n));
  }
}

}  // namespace

TEST_CASE("bytes read are echoed back at once when nothing is owed") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  const std::string message("ping\0pong", 9);  // a NUL in the middle must not cut it short
  REQUIRE(write_some(client, message) == message.size());

  read_turn(conn, read_buffer);
  CHECK(read_available(client) == message);
  CHECK(conn.owed_bytes() == 0);
  CHECK(conn.wants_read());
  CHECK_FALSE(conn.wants_write());
  CHECK_FALSE(conn.wants_close());
}

TEST_CASE("partial write keeps the unsent tail in order, and it arrives once the client reads") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  const std::string sent = pattern(600000);  // far more than an AF_UNIX socket buffers
  std::string received;
  // The client writes everything before reading anything, so the echo fills the socket and
  // the connection must keep the tail of each partial send.
  REQUIRE(send_all_without_reading(client, conn, read_buffer, sent) == sent.size());
  CHECK(conn.wants_write());  // some of the echo did not fit
  for (int rounds = 0; received.size() < sent.size() && rounds < 100000; ++rounds) {
    received += read_available(client);
    if (conn.wants_write()) write_turn(conn);
    if (conn.wants_read()) read_turn(conn, read_buffer);
  }
  CHECK(received.size() == sent.size());
  CHECK(received == sent);
  CHECK_FALSE(conn.wants_write());
}

TEST_CASE("backpressure: a client that never reads stops being read near kMaxOwedBytes") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  const std::string chunk = pattern(65536);
  std::size_t written = 0;
  // Stops at twice the cap at the latest, so a broken cap fails fast instead of eating memory.
  for (int rounds = 0;
       conn.wants_read() && conn.owed_bytes() < 2 * kMaxOwedBytes && rounds < 100000; ++rounds) {
    written += write_some(client, chunk);
    read_turn(conn, read_buffer);
  }
  CHECK_FALSE(conn.wants_read());
  CHECK(conn.owed_bytes() >= kMaxOwedBytes);
  CHECK(conn.owed_bytes() < kMaxOwedBytes + read_buffer.size());
  CHECK(written > kMaxOwedBytes);
  // Once the client reads, the connection drains and wants to read again.
  for (int rounds = 0; conn.wants_write() && rounds < 100000; ++rounds) {
    read_available(client);
    write_turn(conn);
  }
  CHECK(conn.wants_read());
}

TEST_CASE("EOF with bytes owed keeps the connection open until they are sent") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  const std::string sent = pattern(400000);
  REQUIRE(send_all_without_reading(client, conn, read_buffer, sent) == sent.size());
  REQUIRE(shutdown(client.get(), SHUT_WR) == 0);  // half-close: "I am done sending"
  for (int rounds = 0; conn.wants_read() && rounds < 100000; ++rounds) {
    read_turn(conn, read_buffer);
  }
  REQUIRE(conn.wants_write());  // bytes are still owed after EOF
  CHECK_FALSE(conn.wants_read());
  CHECK_FALSE(conn.wants_close());

  std::string received;
  for (int rounds = 0; !conn.wants_close() && rounds < 100000; ++rounds) {
    received += read_available(client);
    write_turn(conn);
  }
  received += read_available(client);
  CHECK(conn.wants_close());
  CHECK(received == sent);
}

TEST_CASE("EOF with nothing owed means close now") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  REQUIRE(shutdown(client.get(), SHUT_WR) == 0);
  read_turn(conn, read_buffer);
  CHECK(conn.wants_close());
}

TEST_CASE("writing to a client that is gone closes the connection instead of raising SIGPIPE") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  const std::string sent = pattern(400000);
  REQUIRE(send_all_without_reading(client, conn, read_buffer, sent) == sent.size());
  REQUIRE(conn.wants_write());
  client.reset();    // the client vanishes while the server still owes it bytes
  write_turn(conn);  // without MSG_NOSIGNAL, SIGPIPE would end this test process here
  CHECK(conn.wants_close());
  CHECK_FALSE(conn.wants_write());
}

TEST_CASE("a spurious readable event (EAGAIN) changes nothing") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  read_turn(conn, read_buffer);
  CHECK(conn.wants_read());
  CHECK_FALSE(conn.wants_close());
}

// What edge triggering changes: the connection remembers each report until a call uses it up.

TEST_CASE("a turn reads at most max_reads times, and says when bytes are left for the next") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(4096);
  const std::string sent = pattern(10 * 4096);  // ten full reads
  REQUIRE(write_some(client, sent) == sent.size());

  conn.mark_readable(false);  // the one report these bytes get
  std::string received;
  for (const std::size_t expected : {3 * 4096, 6 * 4096, 9 * 4096}) {
    conn.serve(read_buffer, 3);
    received += read_available(client);
    CHECK(received.size() == expected);  // three reads a turn, however much is waiting
    CHECK(conn.has_work());              // bytes are left, and no report will say so again
  }
  // The tenth read is full too, so the connection cannot know it emptied the socket until
  // the eleventh says EAGAIN.
  conn.serve(read_buffer, 3);
  received += read_available(client);
  CHECK(received == sent);
  CHECK_FALSE(conn.has_work());
}

TEST_CASE("a short read empties the socket: the connection waits for the next report") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  REQUIRE(write_some(client, "first") == 5);
  conn.mark_readable(false);
  conn.serve(read_buffer, 4);
  CHECK(read_available(client) == "first");
  CHECK_FALSE(conn.has_work());  // 5 bytes of 65536 asked for: the queue was empty

  // Bytes that arrive later are a new edge, which the loop reports; until then a turn does
  // not look (a recv() that could only say EAGAIN is a wasted system call).
  REQUIRE(write_some(client, "second") == 6);
  conn.serve(read_buffer, 4);
  CHECK(read_available(client).empty());
  conn.mark_readable(false);
  conn.serve(read_buffer, 4);
  CHECK(read_available(client) == "second");
}

TEST_CASE("with the EOF reported, a turn reads on past a short read to the EOF") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  REQUIRE(write_some(client, "tail") == 4);
  REQUIRE(shutdown(client.get(), SHUT_WR) == 0);
  // One report for both, as EPOLLIN | EPOLLRDHUP: nothing will wake the loop for the EOF
  // again, so stopping at the short read of "tail" would leave the connection open for good.
  conn.mark_readable(true);
  conn.serve(read_buffer, 4);
  CHECK(read_available(client) == "tail");
  CHECK(conn.wants_close());
}

TEST_CASE("a send that falls short waits for EPOLLOUT before sending again") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  const std::string sent = pattern(600000);
  REQUIRE(send_all_without_reading(client, conn, read_buffer, sent) == sent.size());
  REQUIRE(conn.wants_write());
  const std::size_t owed = conn.owed_bytes();

  std::string received = read_available(client);  // the client reads: room in the buffer
  conn.serve(read_buffer, 0);                     // but the kernel has not reported it yet
  CHECK(conn.owed_bytes() == owed);
  conn.mark_writable();
  conn.serve(read_buffer, 0);
  CHECK(conn.owed_bytes() < owed);
  for (int rounds = 0; received.size() < sent.size() && rounds < 100000; ++rounds) {
    received += read_available(client);
    write_turn(conn);
    if (conn.wants_read()) read_turn(conn, read_buffer);
  }
  received += read_available(client);
  CHECK(received == sent);
}

TEST_CASE("backpressure keeps the read report: reading resumes once the owed bytes drain") {
  auto [server, client] = make_pair();
  Connection conn(std::move(server));
  std::vector<char> read_buffer(65536);
  const std::string chunk = pattern(65536);
  // The client writes and never reads until the connection is over the cap, with its socket
  // still full of unread bytes: they were reported once, when they came.
  std::size_t written = 0;
  for (int rounds = 0;
       conn.wants_read() && conn.owed_bytes() < 2 * kMaxOwedBytes && rounds < 100000; ++rounds) {
    written += write_some(client, chunk);
    conn.mark_readable(false);
    conn.serve(read_buffer, 1);
  }
  REQUIRE_FALSE(conn.wants_read());
  written += write_some(client, chunk);  // bytes left behind the cap, in the server's socket
  int unread = 0;
  REQUIRE(ioctl(conn.fd(), FIONREAD, &unread) == 0);
  REQUIRE(unread > 0);

  // From here on the client sends nothing, so no read report comes: only write reports, as
  // the client reads its echo. Every byte must still come back.
  std::size_t received = 0;
  for (int rounds = 0; received < written && rounds < 100000; ++rounds) {
    received += read_available(client).size();
    conn.mark_writable();
    conn.serve(read_buffer, 4);
  }
  CHECK(received == written);
}
