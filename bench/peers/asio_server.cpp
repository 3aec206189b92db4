// Benchmark peer: a TCP echo server on Boost.Asio with C++20 coroutines.
//
// Not a course stage: `make bench` compares the stages with what a reader might pick instead.
// It is written the way Asio's documentation teaches: one coroutine per connection that reads a
// chunk and writes all of it back before it reads again, which is also its backpressure (a
// client that does not read its echo stops being read). It keeps the course's server contract,
// so the same runner and the same tests drive it.
//
// Build with g++ 12: `g++ -std=c++20 -O2 asio_server.cpp -pthread` (Boost 1.74's awaitable does
// not build with clang 14). -std=c++20 is enough; g++ 10 also needed -fcoroutines.

#include <sys/socket.h>

#include <array>
#include <charconv>
#include <chrono>
#include <cstdint>
#include <iostream>
#include <memory>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>  // before Boost: 1.74's awaitable.hpp uses std::exchange without including it
#include <vector>

#include <boost/asio.hpp>

namespace asio = boost::asio;
using asio::ip::tcp;
using boost::system::error_code;

namespace {

// The chunk each connection reads into, in its coroutine frame. 16 KiB moves bulk data in few
// system calls, while an idle connection that never sent much touches little of it.
constexpr std::size_t kChunkSize = 16 * 1024;

// After an accept error such as EMFILE the connection stays queued, so accepting again at once
// would fail again at once: pause instead of spinning.
constexpr std::chrono::milliseconds kAcceptPause{100};

// More event loops than this is a typing mistake, not a machine.
constexpr unsigned kMaxThreads = 1024;

struct Options {
  asio::ip::address host = asio::ip::make_address_v4("127.0.0.1");  // loopback unless asked
  std::uint16_t port = 7000;                                        // 0: the kernel picks one
  unsigned threads = 1;                                             // event loops
};

// What the command line asks for: run with these options, or print the help.
struct Command {
  bool help = false;
  Options options;
};

struct UsageError : std::runtime_error {
  using std::runtime_error::runtime_error;
};

std::string usage(std::string_view program) {
  return "usage: " + std::string(program) +
         " [--host ADDR] [--port N] [--threads N]\n"
         "\n"
         "A TCP echo server on Boost.Asio with C++20 coroutines: a benchmark peer of the course.\n"
         "\n"
         "  --host ADDR   numeric IPv4 or IPv6 address to listen on (default 127.0.0.1)\n"
         "  --port N      TCP port to listen on, 0 to pick a free one (default 7000)\n"
         "  --threads N   event loops, one io_context per thread (default 1)\n"
         "  --help        print this help and exit\n";
}

// Accepts only a whole decimal number in [min, max]: no sign, no spaces, no trailing text.
unsigned parse_number(std::string_view flag, std::string_view text, unsigned min, unsigned max) {
  unsigned value = 0;
  const char* end = text.data() + text.size();
  const auto [stop, status] = std::from_chars(text.data(), end, value);
  if (text.empty() || status != std::errc() || stop != end || value < min || value > max) {
    throw UsageError(std::string(flag) + ": '" + std::string(text) + "' is not a number from " +
                     std::to_string(min) + " to " + std::to_string(max));
  }
  return value;
}

Command parse_command_line(const std::vector<std::string_view>& args) {
  Command command;
  Options& options = command.options;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string_view flag = args[i];
    if (flag == "--help") {
      command.help = true;
      return command;
    }
    if (flag != "--host" && flag != "--port" && flag != "--threads") {
      if (flag.starts_with("-")) throw UsageError("unknown option '" + std::string(flag) + "'");
      throw UsageError("unexpected argument '" + std::string(flag) + "'");
    }
    if (i + 1 == args.size()) throw UsageError(std::string(flag) + " needs a value");
    const std::string_view value = args[++i];
    if (flag == "--host") {
      // make_address parses numeric addresses only: it never asks DNS.
      error_code ec;
      options.host = asio::ip::make_address(value, ec);
      if (ec) {
        throw UsageError("--host: '" + std::string(value) +
                         "' is not a numeric IPv4 or IPv6 address");
      }
    } else if (flag == "--port") {
      options.port = static_cast<std::uint16_t>(parse_number(flag, value, 0, 65535));
    } else {
      options.threads = parse_number(flag, value, 1, kMaxThreads);
    }
  }
  return command;
}

// "127.0.0.1:7000", or "[::1]:7000" for IPv6.
std::string to_text(const tcp::endpoint& endpoint) {
  std::ostringstream text;
  text << endpoint;
  return text.str();
}

// Setup failures: one line naming what we were doing, exit 1.
void check(const error_code& ec, const std::string& what) {
  if (ec) throw std::runtime_error(what + ": " + ec.message());
}

// SO_REUSEPORT, which Asio has no name for, as a class meeting Asio's SettableSocketOption
// requirements (its documented way to add an option).
class ReusePort {
 public:
  template <class Protocol>
  int level(const Protocol&) const {
    return SOL_SOCKET;
  }
  template <class Protocol>
  int name(const Protocol&) const {
    return SO_REUSEPORT;
  }
  template <class Protocol>
  const int* data(const Protocol&) const {
    return &value_;
  }
  template <class Protocol>
  std::size_t size(const Protocol&) const {
    return sizeof value_;
  }

 private:
  int value_ = 1;
};

tcp::acceptor listen_on(asio::io_context& context, const tcp::endpoint& endpoint, bool reuse_port) {
  tcp::acceptor acceptor(context);
  error_code ec;
  acceptor.open(endpoint.protocol(), ec);
  check(ec, "socket");
  // Lets a restarted server bind while the last run's connections sit in TIME_WAIT.
  acceptor.set_option(tcp::acceptor::reuse_address(true), ec);
  check(ec, "setsockopt SO_REUSEADDR");
  if (reuse_port) {
    acceptor.set_option(ReusePort{}, ec);
    check(ec, "setsockopt SO_REUSEPORT");
  }
  acceptor.bind(endpoint, ec);
  check(ec, "bind " + to_text(endpoint));
  // A short accept queue refuses or stalls a burst of connects; the kernel caps this at
  // net.core.somaxconn.
  acceptor.listen(asio::socket_base::max_listen_connections, ec);
  check(ec, "listen");
  return acceptor;
}

// One client, from accept to close; the coroutine frame owns the socket and the chunk.
asio::awaitable<void> echo(tcp::socket socket) {
  std::array<char, kChunkSize> chunk;
  try {
    for (;;) {
      const std::size_t n =
          co_await socket.async_read_some(asio::buffer(chunk), asio::use_awaitable);
      // async_write finishes only once all n bytes are sent, so a client that does not read
      // its echo is not read from either: nothing piles up here.
      co_await asio::async_write(socket, asio::buffer(chunk.data(), n), asio::use_awaitable);
    }
  } catch (const boost::system::system_error&) {
    // asio::error::eof: the client half-closed, and every chunk it sent has been written back,
    // so nothing is owed and closing now is the whole goodbye. Any other error (a reset) ends
    // this client only. Asio sends with MSG_NOSIGNAL, so a dead peer raises no SIGPIPE.
  }
}

asio::awaitable<void> accept_loop(tcp::acceptor acceptor) {
  asio::steady_timer pause(acceptor.get_executor());
  for (;;) {
    error_code ec;
    tcp::socket socket =
        co_await acceptor.async_accept(asio::redirect_error(asio::use_awaitable, ec));
    if (ec) {
      pause.expires_after(kAcceptPause);
      co_await pause.async_wait(asio::use_awaitable);
      continue;
    }
    // An echo answers small writes at once; Nagle's algorithm would hold them back.
    socket.set_option(tcp::no_delay(true), ec);
    asio::co_spawn(acceptor.get_executor(), echo(std::move(socket)), asio::detached);
  }
}

// With --threads N: N io_contexts, each run by one thread, each with its own SO_REUSEPORT
// acceptor on the same port, rather than one io_context run by N threads. Asio's documentation
// offers both (its HTTP server examples 2 and 3); for throughput an expert picks one
// io_context per thread: every handler of a connection runs on the thread that accepted it,
// and no two threads share a scheduler queue, its lock or its epoll descriptor. One shared
// io_context balances uneven connections better, but pays for that on every operation. The
// kernel spreads connections over the listeners, as in the course's stage 5, so the two
// compare like for like.
void run(const Options& options) {
  std::vector<std::unique_ptr<asio::io_context>> contexts;
  std::vector<tcp::acceptor> acceptors;
  const bool reuse_port = options.threads > 1;
  for (unsigned i = 0; i < options.threads; ++i) {
    // Concurrency hint 1: only one thread ever runs this io_context.
    contexts.push_back(std::make_unique<asio::io_context>(1));
    // The first acceptor binds the requested port (0 = any); the others reuse the one it got.
    const tcp::endpoint endpoint = acceptors.empty() ? tcp::endpoint(options.host, options.port)
                                                     : acceptors.front().local_endpoint();
    acceptors.push_back(listen_on(*contexts.back(), endpoint, reuse_port));
  }
  error_code ec;
  const tcp::endpoint bound = acceptors.front().local_endpoint(ec);
  check(ec, "getsockname");
  // Flushed at once: scripts and tests wait for this line before they connect.
  std::cout << "listening on " << to_text(bound) << std::endl;

  for (unsigned i = 0; i < options.threads; ++i) {
    asio::co_spawn(*contexts[i], accept_loop(std::move(acceptors[i])), asio::detached);
  }
  std::vector<std::jthread> threads;
  for (unsigned i = 1; i < options.threads; ++i) {
    threads.emplace_back([&context = *contexts[i]] { context.run(); });
  }
  contexts.front()->run();
}

}  // namespace

int main(int argc, char** argv) {
  const std::string_view program = argc > 0 ? argv[0] : "asio_server";
  const std::vector<std::string_view> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  Command command;
  try {
    command = parse_command_line(args);
  } catch (const UsageError& e) {
    std::cerr << "error: " << e.what() << "\n" << usage(program);
    return 2;
  }
  if (command.help) {
    std::cout << usage(program);
    return 0;
  }
  try {
    run(command.options);
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
