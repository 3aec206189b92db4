#include "server.hpp"

#include <doctest/doctest.h>

#include <cerrno>

TEST_CASE("a client's own failures close it quietly; memory pressure and bugs are told apart") {
  for (const int gone :
       {ECONNRESET, EPIPE, ETIMEDOUT, EHOSTUNREACH, ENETUNREACH, ENETDOWN, EHOSTDOWN}) {
    CAPTURE(gone);
    CHECK(classify_client_error(gone) == ClientError::kGone);
  }
  for (const int short_of_memory : {ENOMEM, ENOBUFS}) {
    CAPTURE(short_of_memory);
    CHECK(classify_client_error(short_of_memory) == ClientError::kOutOfMemory);
  }
  // What no client can cause: our own misuse of a descriptor.
  for (const int bug : {EBADF, EINVAL, EFAULT, ENOTSOCK, ENOTCONN}) {
    CAPTURE(bug);
    CHECK(classify_client_error(bug) == ClientError::kUnexpected);
  }
}
