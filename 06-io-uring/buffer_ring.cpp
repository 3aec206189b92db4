#include "buffer_ring.hpp"

#include <sys/mman.h>

#include <cassert>
#include <cerrno>
#include <cstring>
#include <string>

#include "reactor.hpp"

BufferRing::BufferRing(io_uring& ring, std::uint16_t group, unsigned count, std::size_t buffer_size)
    : slab_(new char[count * buffer_size]),
      group_(group),
      count_(count),
      buffer_size_(buffer_size) {
  assert(count > 0 && count <= 32768 && (count & (count - 1)) == 0 && "a power of two");
  // The ring the kernel reads the buffers from must start on a page: mmap gives one.
  entries_size_ = count * sizeof(io_uring_buf);
  void* memory =
      mmap(nullptr, entries_size_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (memory == MAP_FAILED) throw FatalError(std::string("mmap: ") + std::strerror(errno));
  entries_ = static_cast<io_uring_buf_ring*>(memory);
  io_uring_buf_ring_init(entries_);
  io_uring_buf_reg registration{};
  registration.ring_addr = reinterpret_cast<std::uintptr_t>(entries_);
  registration.ring_entries = count;
  registration.bgid = group;
  if (const int error = -io_uring_register_buf_ring(&ring, &registration, 0); error != 0) {
    munmap(entries_, entries_size_);
    const std::string call = std::string("io_uring_register_buf_ring: ") + std::strerror(error);
    if (error == EINVAL) {
      throw IoUringUnavailable(call + " (provided buffer rings need Linux 5.19 or later; " +
                               kRunStageFive + ")");
    }
    throw FatalError(call);
  }
  // Every buffer starts in the ring, the kernel's to fill.
  for (unsigned id = 0; id < count; ++id) {
    io_uring_buf_ring_add(entries_, slab_.get() + id * buffer_size_,
                          static_cast<unsigned>(buffer_size_), static_cast<std::uint16_t>(id),
                          io_uring_buf_ring_mask(count), static_cast<int>(id));
  }
  io_uring_buf_ring_advance(entries_, static_cast<int>(count));
}

BufferRing::~BufferRing() {
  munmap(entries_, entries_size_);
}

std::span<char> BufferRing::bytes(std::uint16_t id, std::size_t length) const {
  assert(id < count_ && length <= buffer_size_);
  return {slab_.get() + id * buffer_size_, length};
}

bool BufferRing::holds(std::uint16_t id, std::span<const char> bytes) const {
  const char* start = slab_.get() + id * buffer_size_;
  return bytes.data() >= start && bytes.data() + bytes.size() <= start + buffer_size_;
}

void BufferRing::give_back(std::uint16_t id) {
  assert(lent_ > 0 && "a buffer given back twice, or never taken");
  --lent_;
  // At the tail, then published with a store-release the kernel reads before taking it.
  io_uring_buf_ring_add(entries_, slab_.get() + id * buffer_size_,
                        static_cast<unsigned>(buffer_size_), id, io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(entries_, 1);
}
