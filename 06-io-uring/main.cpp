// Stage 05-full-server: a TCP echo server with one coroutine event loop per core.
//
// Parses the command line, opens one SO_REUSEPORT listener per loop, prints "listening on
// HOST:PORT", runs each loop on its own thread, and turns SIGINT and SIGTERM into a graceful
// shutdown. Exit 0 after a signal, 1 when the server could not start or a loop failed.

#include <poll.h>
#include <pthread.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/resource.h>
#include <sys/signalfd.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <csignal>
#include <cstdint>
#include <cstring>
#include <exception>
#include <iostream>
#include <memory>
#include <string>
#include <string_view>
#include <thread>
#include <vector>

#include "log.hpp"
#include "options.hpp"
#include "server.hpp"
#include "socket.hpp"

namespace {

// The cores this process may run on (taskset and cgroup cpusets shrink it): --threads's default.
unsigned usable_cores() {
  cpu_set_t cores;
  if (sched_getaffinity(0, sizeof cores, &cores) == 0 && CPU_COUNT(&cores) > 0) {
    return static_cast<unsigned>(CPU_COUNT(&cores));
  }
  const unsigned reported = std::thread::hardware_concurrency();
  return reported > 0 ? reported : 1;
}

// A server that holds one descriptor per connection needs many, and the soft limit that
// shells hand out (often 1024) is far below what the hard limit allows. Raise it as far as we
// may; going past the hard limit takes root, or LimitNOFILE= in a systemd unit.
rlim_t raise_descriptor_limit() {
  rlimit limit{};
  if (getrlimit(RLIMIT_NOFILE, &limit) != 0) return 0;
  if (limit.rlim_cur < limit.rlim_max) {
    const rlimit raised{limit.rlim_max, limit.rlim_max};
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) limit = raised;
  }
  return limit.rlim_cur;
}

// SIGINT and SIGTERM, blocked in this thread before any other starts (threads inherit the
// mask), so that no thread is ever interrupted by them: they wait in a signalfd instead, which
// the main thread reads like any descriptor. No work happens in a signal handler.
Fd block_shutdown_signals() {
  sigset_t signals;
  sigemptyset(&signals);
  sigaddset(&signals, SIGINT);
  sigaddset(&signals, SIGTERM);
  if (pthread_sigmask(SIG_BLOCK, &signals, nullptr) != 0) {
    throw FatalError("pthread_sigmask: cannot block SIGINT and SIGTERM");
  }
  Fd fd(signalfd(-1, &signals, SFD_CLOEXEC));
  if (!fd) throw FatalError(std::string("signalfd: ") + std::strerror(errno));
  return fd;
}

// The loops, each on its own thread, and what the main thread does while they run.
class Server {
 public:
  Server(const Options& options, std::vector<Fd> listeners, ConnectionLimit& limit)
      : options_(options), finished_(eventfd(0, EFD_CLOEXEC)) {
    if (!finished_) throw FatalError(std::string("eventfd: ") + std::strerror(errno));
    for (unsigned i = 0; i < listeners.size(); ++i) {
      workers_.push_back(std::make_unique<Worker>(i, std::move(listeners[i]), options, limit));
    }
    failures_.resize(workers_.size());
  }

  // Joins whatever was started, even when starting the rest failed.
  ~Server() {
    for (const auto& worker : workers_)
      worker->request(Request::kStopNow);
    for (std::thread& thread : threads_)
      thread.join();
  }

  void start() {
    for (std::size_t i = 0; i < workers_.size(); ++i) {
      threads_.emplace_back([this, i] {
        try {
          workers_[i]->run();
        } catch (const std::exception& e) {
          // Read by the main thread only after the join.
          failures_[i] = workers_[i]->name() + ": " + e.what();
          loop_failed_.store(true, std::memory_order_relaxed);
        }
        const std::uint64_t one = 1;
        while (::write(finished_.get(), &one, sizeof one) < 0 && errno == EINTR) {
        }
      });
    }
  }

  // Until every loop has stopped: the first SIGINT or SIGTERM asks each to drain, a second
  // asks each to stop now; a loop that fails makes the others drain. Returns the exit code.
  int supervise(int signal_fd) {
    std::size_t finished = 0;
    int signals = 0;
    bool failed = false;
    while (finished < workers_.size()) {
      pollfd fds[2] = {{signal_fd, POLLIN, 0}, {finished_.get(), POLLIN, 0}};
      if (poll(fds, 2, -1) < 0) {
        if (errno == EINTR) continue;
        throw FatalError(std::string("poll: ") + std::strerror(errno));
      }
      if (fds[0].revents & POLLIN) {
        signalfd_siginfo info{};
        if (::read(signal_fd, &info, sizeof info) == sizeof info) {
          const char* name = sigabbrev_np(static_cast<int>(info.ssi_signo));
          if (++signals == 1) {
            log(LogLevel::kInfo, std::string("SIG") + name +
                                     ": shutting down: no new connections; open ones have " +
                                     std::to_string(options_.shutdown_timeout.count()) +
                                     " ms to finish (a second signal closes them now)");
            request_all(Request::kDrain);
          } else {
            log(LogLevel::kWarn,
                std::string("SIG") + name + " again: closing every connection now");
            request_all(Request::kStopNow);
          }
        }
      }
      if (fds[1].revents & POLLIN) {
        std::uint64_t stopped = 0;
        if (::read(finished_.get(), &stopped, sizeof stopped) == sizeof stopped) {
          finished += stopped;
        }
        // Not failures_: a loop may be writing its own entry right now.
        if (!failed && loop_failed_.load(std::memory_order_relaxed)) {
          failed = true;
          log(LogLevel::kError, "a loop failed: shutting down the others");
          request_all(Request::kDrain);
        }
      }
    }
    for (std::thread& thread : threads_)
      thread.join();
    threads_.clear();
    log_counters();
    for (const std::string& failure : failures_) {
      if (!failure.empty()) log(LogLevel::kError, failure);
    }
    return loop_failed_.load(std::memory_order_relaxed) ? 1 : 0;
  }

 private:
  void request_all(Request request) {
    for (const auto& worker : workers_)
      worker->request(request);
  }

  void log_counters() const {
    LoopCounters total;
    for (const auto& worker : workers_) {
      const LoopCounters& counters = worker->counters();
      log(LogLevel::kInfo, "loop " + std::to_string(worker->index()) + ": " + describe(counters));
      total += counters;
    }
    log(LogLevel::kInfo,
        "total over " + count_of(workers_.size(), "loop") + ": " + describe(total));
  }

  const Options& options_;
  Fd finished_;  // each loop's thread adds 1 when it ends
  std::vector<std::unique_ptr<Worker>> workers_;
  std::vector<std::string> failures_;     // each written by its own loop's thread, read after join
  std::atomic<bool> loop_failed_{false};  // read while the loops run
  std::vector<std::thread> threads_;
};

}  // namespace

int main(int argc, char** argv) {
  // Sockets send with MSG_NOSIGNAL, but stderr can be a pipe too (`server 2>&1 | tee log`).
  // Once its reader has gone, as tee does on Ctrl-C, a write to it must fail with EPIPE rather
  // than raise SIGPIPE, whose default action would end the server in the middle of its work.
  std::signal(SIGPIPE, SIG_IGN);
  const std::string_view program = argc > 0 ? argv[0] : "server";
  const std::vector<std::string_view> args(argv + (argc > 0 ? 1 : 0), argv + argc);
  const Command command = parse_command_line(args, usable_cores());
  switch (command.action) {
    case Command::Action::kHelp:
      std::cout << usage(program);
      return 0;
    case Command::Action::kUsageError:
      std::cerr << "error: " << command.error << "\n" << usage(program);
      return 2;
    case Command::Action::kRun:
      break;
  }
  const Options& options = command.options;
  set_log_level(options.log_level);
  const rlim_t descriptors = raise_descriptor_limit();
  try {
    const Fd signals = block_shutdown_signals();
    std::vector<Fd> listeners = listen_group(options.host, options.port, options.threads);
    const std::string address = local_address(listeners[0].get());
    ConnectionLimit limit(options.max_connections);
    Server server(options, std::move(listeners), limit);
    // Flushed at once: scripts and tests wait for this line before they connect.
    std::cout << "listening on " << address << std::endl;
    log(LogLevel::kInfo, "listening on " + address + " with " +
                             count_of(options.threads, "event loop") +
                             ", each with its own SO_REUSEPORT listener and io_uring; up to " +
                             std::to_string(descriptors) + " descriptors (ulimit -n)");
    server.start();
    return server.supervise(signals.get());
  } catch (const std::exception& e) {
    std::cerr << "error: " << e.what() << "\n";
    return 1;
  }
}
