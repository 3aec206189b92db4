"""Stage 6 only: where io_uring cannot be used, the server says so in one line and exits 1.

Stage 6 keeps stage 5's whole contract, so every other test of the suite applies to it as it
is. What it adds is a way to fail: a kernel too old for what it uses, a container whose seccomp
policy forbids io_uring, kernel.io_uring_disabled. There it must print exactly one stderr line
`error: io_uring unavailable: <why, and what to do>` and exit 1 before it listens, so that a
reader (and `make run`, which falls back to stage 5) knows at once what happened. The variable
NO_IO_URING, set to any non-empty value, makes it take that path on a machine that has io_uring;
set to the empty string, it changes nothing.
"""

import re

import pytest

from helpers import (CRASH_SIGNS, NO_IO_URING, describe_run, echo_roundtrip, run_cli,
                     server_environment)

pytestmark = pytest.mark.since(6)

UNAVAILABLE_PREFIX = "error: io_uring unavailable: "
# What to do instead: the stage that needs no io_uring.
NAMES_STAGE_5 = re.compile(r"stage[ -]?5|STAGE=5|05-full-server", re.IGNORECASE)


# "0" too: any non-empty value counts, so a server that reads the variable as a number (atoi)
# and takes "0" for "use io_uring" is caught.
@pytest.mark.parametrize("value", ["1", "0"])
def test_io_uring_unavailable_exits_1_with_one_line(server_command, tmp_path, value):
    """Catches a server that ignores NO_IO_URING, crashes or hangs without io_uring, exits with
    another code, prints more than one line, or does not say what to do instead."""
    args = ["--host", "127.0.0.1", "--port", "0", "--threads", "2"]
    rc, out, err = run_cli(server_command, args, tmp_path,
                           env=server_environment(**{NO_IO_URING: value}))
    report = f"with {NO_IO_URING}={value}: " + describe_run(args, rc, out, err)
    assert "listening on" not in out, "it started listening without io_uring\n" + report
    assert not any(sign in err for sign in CRASH_SIGNS), "stderr looks like a crash\n" + report
    assert rc == 1, "expected exit code 1 where io_uring is unavailable\n" + report
    lines = err.splitlines()
    assert len(lines) == 1 and err.endswith("\n"), (
        f"expected exactly one stderr line, got {len(lines)}"
        f"{'' if err.endswith(chr(10)) else ' (the last not ended by a newline)'}\n" + report)
    assert lines[0].startswith(UNAVAILABLE_PREFIX), (
        f"the line must start with {UNAVAILABLE_PREFIX!r}\n" + report)
    reason = lines[0].removeprefix(UNAVAILABLE_PREFIX)
    assert NAMES_STAGE_5.search(reason), (
        "the line says why, but not what to do: point to stage 5, which needs no io_uring"
        f" (for example `make run STAGE=5`)\n" + report)
    assert out == "", "stdout must stay empty when the server does not start\n" + report


def test_empty_no_io_uring_changes_nothing(start_server):
    """Catches a server that takes NO_IO_URING set to the empty string for set: only a
    non-empty value means "do without io_uring"."""
    server = start_server("--threads", 2, env={NO_IO_URING: ""})
    client = server.connect()
    echo_roundtrip(client, b"io_uring still in use", f"an echo with {NO_IO_URING} set but empty")
