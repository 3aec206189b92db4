#pragma once
// BufferRing: the loop's receive buffers, lent to the kernel through a provided buffer ring.

#include <liburing.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <span>

// A slab of equal buffers and the ring through which the kernel takes one for each receive
// that completes (a receive asked with IOSQE_BUFFER_SELECT and this ring's group). A buffer
// is the kernel's while it sits in the ring, and ours from the completion that names it until
// give_back() puts it back. So memory for receiving is the loop's, not each connection's: an
// idle connection holds none. Owns the slab and the ring's memory; borrows the io_uring.
class BufferRing {
 public:
  // count: a power of two, at most 32768. Throws FatalError, or IoUringUnavailable where the
  // kernel has no provided buffer rings (before Linux 5.19).
  BufferRing(io_uring& ring, std::uint16_t group, unsigned count, std::size_t buffer_size);
  // The ring's close unregisters the group; until then nothing may receive into the slab, so
  // this is destroyed only once no receive is in flight (Reactor::quiesce).
  ~BufferRing();
  BufferRing(const BufferRing&) = delete;
  BufferRing& operator=(const BufferRing&) = delete;

  // The first `length` bytes of buffer `id`, as a completion named them.
  std::span<char> bytes(std::uint16_t id, std::size_t length) const;
  // Whether bytes lie inside buffer `id`.
  bool holds(std::uint16_t id, std::span<const char> bytes) const;
  // Hands buffer `id` back to the kernel, for the next receive of any connection.
  void give_back(std::uint16_t id);

  // Buffers the kernel has given us and we have not given back yet.
  std::size_t lent() const { return lent_; }
  // A completion named buffer `id`: it is ours now.
  void took(std::uint16_t) { ++lent_; }
  // The kernel may still write into the slab (Reactor::quiesce gave up waiting): never free it.
  void leak() { (void)slab_.release(); }
  std::uint16_t group() const { return group_; }
  unsigned count() const { return count_; }
  std::size_t buffer_size() const { return buffer_size_; }

 private:
  io_uring_buf_ring* entries_ = nullptr;  // shared with the kernel: page-aligned, from mmap
  std::size_t entries_size_ = 0;
  // Allocated, never written by us: the pages become resident only as the kernel fills them.
  std::unique_ptr<char[]> slab_;
  std::uint16_t group_;
  unsigned count_;
  std::size_t buffer_size_;
  std::size_t lent_ = 0;
};
