// What one idle connection of stage 4 allocates: the coroutine frames the compiler chose, and
// the reactor's own bookkeeping. Replaces the global operator new with one that prints every
// size asked for, then spawns one echo connection and runs the reactor until it waits for
// bytes, exactly where an idle connection spends its life.
//
//   make frame-sizes          (g++; CXX=clang++ for clang's frames)
//
// Chapter 04 quotes the output ("What it costs").

#include <sys/socket.h>

#include <cstdio>
#include <cstdlib>
#include <new>

#include "reactor.hpp"
#include "server.hpp"

namespace {
bool tracing = false;
}

void* operator new(std::size_t size) {
  if (tracing) std::printf("  operator new(%zu)\n", size);
  if (void* p = std::malloc(size)) return p;
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept {
  std::free(p);
}
void operator delete(void* p, std::size_t) noexcept {
  std::free(p);
}

int main() {
  Reactor reactor;
  int fds[2];
  if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, fds) != 0) return 1;
  const Fd client(fds[1]);  // stays open and silent: the connection idles
  std::puts("reactor.spawn(echo(...)):");
  tracing = true;
  reactor.spawn(echo(reactor, Fd(fds[0])));
  std::puts("first round (the echo starts, finds nothing to read, and waits):");
  reactor.run_once(0);
  tracing = false;
  std::printf("coroutines alive: %zu\n", reactor.spawned_count());
}
