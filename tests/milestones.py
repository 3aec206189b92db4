"""The labs' milestones. Lab 1's are chapter 01's road from a minimal poll loop to stage 1, one
step at a time; LABS, at the end, holds every lab's.

Written down once, here, for everyone who needs it: docs/01-poll.md renders STEPS as its table
of steps (tools/examples.py checks that the two agree), `make examples-check` grades the example
programs against it, and a lab grades a learner's server step by step with it.

Each step is a dict:
    key     a short name, stable: labs and scripts refer to steps by it
    asks    what the server must do to pass it, in one line
    tests   the suite tests that decide it, as pytest node ids relative to tests/
    anchor  the section of docs/01-poll.md that teaches it

Every test that `pytest tests --stage 1` runs belongs to exactly one step; tools/tests checks
that. A server "passes" a step when it passes every test of that step; since the steps build on
each other, a server is graded by the first step it fails. The tests marked slow
(test_c10k_clients_all_served, test_chaos_soak_every_normal_client_gets_its_bytes) belong to
steps as well; `-m "not slow"` leaves them out of a quick run.

Plain Python data, standard library only: a lab imports it without pytest.
"""

STEPS = [
    {
        "key": "one-client",
        "asks": "one client's bytes come back, all of them, in order, whatever their values",
        "tests": [
            "test_echo.py::test_single_byte_echoed_without_waiting_for_more",
            "test_echo.py::test_ping_pong_small_messages_each_answered",
            "test_echo.py::test_many_small_writes_all_echoed_in_order",
            "test_echo.py::test_echo_all_byte_values_binary_safe",
            "test_echo.py::test_nul_in_middle_not_treated_as_end_of_string",
            "test_echo.py::test_leading_nul_not_treated_as_empty_message",
            "test_fd_leaks.py::test_closed_connections_do_not_leak_fds[echo_then_close]",
            "test_fd_leaks.py::test_closed_connections_do_not_leak_fds[connect_and_close_at_once]",
        ],
        "anchor": "the-minimal-loop",
        "hint": 'the blocking seed passes this already: read it, run it, and keep it passing',
        "minutes": 15,
    },
    {
        "key": "many-clients",
        "asks": "many clients at once on one thread, each served in turn, none waiting for another",
        "tests": [
            "test_echo.py::test_each_client_gets_only_its_own_bytes",
            "test_accept_storm.py::test_connect_burst_while_server_busy_all_queued_and_served",
            "test_busy_loop.py::test_idle_connections_do_not_spin",
            "test_fairness.py::test_flooding_client_does_not_starve_others",
            "test_many_clients.py::test_more_than_1024_clients_all_served",
            "test_many_clients.py::test_c10k_clients_all_served",
        ],
        "anchor": "the-minimal-loop",
        "hint": ("one thread can wait on many sockets at once only if it never blocks in accept or "
                 "recv: ask poll() which are ready, and make every socket non-blocking"),
        "minutes": 120,
    },
    {
        "key": "owed-bytes",
        "asks": "large echoes: what send() did not take is kept, in order, and sent when writable",
        "tests": [
            "test_large.py::test_partial_write_not_dropped",
            "test_large.py::test_several_large_echoes_at_once_kept_apart",
            "test_busy_loop.py::test_unwritable_pending_output_does_not_spin",
            "test_fd_leaks.py::test_closed_connections_do_not_leak_fds[close_while_owed]",
        ],
        "anchor": "bufferhpp-the-bytes-owed-to-a-client",
        "hint": ("send() may take fewer bytes than you gave it, or none (EAGAIN): keep the rest "
                 "for that client, ask for POLLOUT while something is kept, and stop asking when "
                 "nothing is"),
        "minutes": 60,
    },
    {
        "key": "half-close",
        "asks": "a client's end-of-file stops the reading, not the echo: close once nothing is owed",
        "tests": [
            "test_half_close.py::test_half_close_tail_not_dropped",
            "test_half_close.py::test_eof_after_half_close_with_nothing_owed",
            "test_half_close.py::test_half_close_right_after_connect_gives_eof",
            "test_half_close.py::test_data_arriving_with_fin_is_echoed",
            "test_fd_leaks.py::test_closed_connections_do_not_leak_fds[half_close]",
        ],
        "anchor": "connectioncpp-reading-echoing-sending",
        "hint": ("recv() returning 0 means the client will send no more, not that it has stopped "
                 "reading: finish sending what you owe, then close"),
        "minutes": 45,
    },
    {
        "key": "backpressure",
        "asks": "a client that does not read is slowed down, not buffered without bound",
        "tests": [
            "test_backpressure.py::test_non_reading_client_memory_stays_bounded",
            "test_backpressure.py::test_other_clients_served_while_one_does_not_read",
        ],
        "anchor": "backpressure",
        "hint": ("stop reading from a client while you owe it more than a cap; its own unread "
                 "bytes then wait in the kernel, and TCP slows the client"),
        "minutes": 30,
    },
    {
        "key": "resets",
        "asks": "a client that resets or vanishes ends its own connection only (no SIGPIPE)",
        "tests": [
            "test_resets.py::test_reset_mid_stream_does_not_kill_server",
            "test_resets.py::test_half_closed_client_vanishing_does_not_kill_server",
            "test_resets.py::test_many_clients_vanishing_at_once_do_not_kill_server",
            "test_resets.py::test_reset_does_not_disturb_other_clients",
            "test_fd_leaks.py::test_closed_connections_do_not_leak_fds[reset]",
            "test_fd_leaks.py::test_closed_connections_do_not_leak_fds[half_close_then_vanish]",
            "test_fd_leaks.py::test_mixed_concurrent_connections_do_not_leak_fds",
            "test_signals.py::test_stop_and_continue_does_not_kill_server",
            "test_soak.py::test_chaos_soak_every_normal_client_gets_its_bytes",
        ],
        "anchor": "sigpipe-and-resets",
        "hint": ("a send to a reset connection raises SIGPIPE, which kills the process: send with "
                 "MSG_NOSIGNAL, and treat ECONNRESET and EPIPE as the end of that client only"),
        "minutes": 30,
    },
    {
        "key": "accept-errors",
        "asks": "out of descriptors, or a failed listener: neither spins; shed load, or exit 1",
        "tests": [
            "test_emfile.py::test_emfile_does_not_spin_and_service_resumes",
            "test_listener_failure.py::test_listener_failure_exits_1_not_spins",
        ],
        "anchor": "loopcpp-accepting",
        "hint": ("EMFILE leaves the connection in the accept queue, so the listener stays "
                 "readable: keep a spare descriptor to accept and close it, and treat any other "
                 "listener error as fatal"),
        "minutes": 45,
    },
    {
        "key": "contract",
        "asks": "the rest of the contract: --help, usage errors (exit 2), setup errors (exit 1), "
                "IPv6, TCP_NODELAY",
        "tests": [
            "test_cli.py::test_help_prints_usage_and_exits_0",
            "test_cli.py::test_bad_arguments_rejected_with_usage_and_exit_2",
            "test_cli.py::test_address_in_use_exits_1",
            "test_cli.py::test_unassigned_address_bind_failure_exits_1",
            "test_cli.py::test_port_0_prints_the_real_port",
            "test_cli.py::test_listening_line_is_one_flushed_line",
            "test_cli.py::test_ipv6_host_printed_in_brackets",
            "test_cli.py::test_default_host_is_loopback_only",
            "test_cli.py::test_default_port_is_7000",
            "test_cli.py::test_restart_on_same_port_while_old_connections_linger",
            "test_socket_options.py::test_accepted_sockets_set_tcp_nodelay",
        ],
        "anchor": "optionscpp-and-maincpp",
        "hint": ("the labs guide's section on the server contract gives it flag by flag; try "
                 "build/lab/01-poll/server --help and a bad flag against it"),
        "minutes": 30,
    },
]

# The example programs of examples/ that are servers, and where the chapters say each one
# stops: it passes every step before `fails_step`, and `fails_test` (a test of that step)
# fails against it, as does every test in `also_fails` (tests of later steps that the chapter
# names, each failing in every run). `make examples-check` runs exactly that. Every other
# examples/*.cpp is a self-checking program that must exit 0.
SERVER_EXAMPLES = {
    "blocking_server": {
        "fails_step": "many-clients",
        "fails_test": "test_echo.py::test_each_client_gets_only_its_own_bytes",
        "also_fails": [],
    },
    "poll_minimal": {
        "fails_step": "owed-bytes",
        "fails_test": "test_large.py::test_partial_write_not_dropped",
        # One per later step, as docs/01-poll.md lists them. The SIGPIPE death that step
        # "resets" is about depends on timing, so no test of it is counted on here.
        "also_fails": [
            "test_half_close.py::test_half_close_tail_not_dropped",
            "test_backpressure.py::test_non_reading_client_memory_stays_bounded",
            "test_resets.py::test_reset_does_not_disturb_other_clients",
            "test_emfile.py::test_emfile_does_not_spin_and_service_resumes",
            "test_listener_failure.py::test_listener_failure_exits_1_not_spins",
            "test_cli.py::test_help_prints_usage_and_exits_0",
            "test_socket_options.py::test_accepted_sockets_set_tcp_nodelay",
        ],
    },
}


def step(key):
    """The step named `key`; KeyError if there is none."""
    for s in STEPS:
        if s["key"] == key:
            return s
    raise KeyError(key)


def steps_before(key):
    """The steps a server must pass before it reaches step `key`, in order."""
    index = STEPS.index(step(key))
    return STEPS[:index]


# --- the labs --------------------------------------------------------------------------------
#
# A lab has the learner write a stage; `make check-lab-N` grades it by these milestones, in
# order, and stops at the first one not passed. LABS[N]["dir"] is the stage the lab writes: its
# chapter is docs/<dir>.md, its workspace lab/<dir>/. A milestone is a dict like a step above,
# except:
#     tests   node ids relative to tests/, and these other kinds of entry:
#               "lab/..."      a structural check of tests/lab/, which the stages' own suite
#                              never runs (a later stage need not use epoll at all)
#               SUITE          every test `pytest tests --stage N` runs for the lab's stage
#               "unit::FILE::NAME"  the TEST_CASE NAME of the reference stage's FILE, compiled
#                              against the learner's headers (a C++ milestone: SERVER=path
#                              grading leaves it out)
#               "binary::coroutines"  the server binary holds coroutines (their bodies, as g++
#                              and clang name them): the lab's echo is not the seed's callbacks
#                              (C++ only: SERVER=path grading leaves it out)
#     read    the chapter section that teaches it: "docs/FILE.md#anchor" (make docs-check
#             checks every one resolves)
#     hint    one line to try before reading the answer
#     minutes about how long it takes a learner who has read the chapter
# A lab may also say what the machine must offer for its grading: "needs": "io_uring".
# Lab 1's milestones are the steps above: chapter 01 teaches them in that order.

SUITE = "suite"
TASK_TESTS = "04-coroutines/task_test.cpp"

STAGE1_SUITE = {
    "key": "suite",
    "asks": "everything stage 1 passed still passes: the whole shared suite",
    "tests": [SUITE],
}

LABS = {
    1: {
        "dir": "01-poll",
        "milestones": [dict(s, read=f"docs/01-poll.md#{s['anchor']}") for s in STEPS],
    },
    2: {
        "dir": "02-epoll-level",
        "milestones": [
            {
                "key": "epoll",
                "asks": "the clients are registered with epoll: an epoll descriptor's interest "
                        "list holds every client socket",
                "tests": ["lab/test_structure.py::test_clients_registered_with_epoll"],
                "read": "docs/02-epoll-level.md#epoll-in-three-system-calls",
                "hint": ("replace poll() and its table with one epoll descriptor: epoll_ctl ADD "
                         "each client as you accept it, epoll_wait for the ready ones"),
                "minutes": 90,
            },
            {
                "key": "idle-is-free",
                "asks": "an echo costs the same with 5,000 idle connections open as with none",
                "tests": ["lab/test_structure.py::test_idle_connections_cost_flat"],
                "read": "docs/02-epoll-level.md#the-cost-of-idle-connections-measured",
                "hint": ("nothing in one round may walk every connection: epoll_wait reports the "
                         "ready ones, and only they are touched"),
                "minutes": 20,
            },
            dict(STAGE1_SUITE,
                 read="docs/02-epoll-level.md#the-stale-event-hazard",
                 hint=("a client closed earlier in the same round may still have an event in the "
                       "array: look it up by something that cannot be reused, and deregister "
                       "before you close"),
                 minutes=60),
        ],
    },
    3: {
        "dir": "03-epoll-edge",
        "milestones": [
            {
                "key": "edge-triggered",
                "asks": "every client is registered once, edge-triggered (EPOLLET)",
                "tests": ["lab/test_structure.py::test_clients_registered_edge_triggered"],
                "read": "docs/03-epoll-edge.md#level-and-edge",
                "hint": ("register each client once, with EPOLLIN | EPOLLOUT | EPOLLRDHUP | "
                         "EPOLLET, and never EPOLL_CTL_MOD it again"),
                "minutes": 30,
            },
            {
                "key": "drain",
                "asks": "no byte is left behind: large echoes, tails after a half-close and "
                        "bursts of connects all complete",
                "tests": [
                    "test_large.py::test_partial_write_not_dropped",
                    "test_large.py::test_several_large_echoes_at_once_kept_apart",
                    "test_half_close.py::test_half_close_tail_not_dropped",
                    "test_half_close.py::test_data_arriving_with_fin_is_echoed",
                    "test_accept_storm.py::"
                    "test_connect_burst_while_server_busy_all_queued_and_served",
                ],
                "read": "docs/03-epoll-edge.md#connectioncpp-one-turn",
                "hint": ("an edge is reported once: a connection must remember that it is "
                         "readable or writable until a call says EAGAIN, and accept() must loop "
                         "the same way"),
                "minutes": 90,
            },
            {
                "key": "fairness",
                "asks": "a client that floods cannot starve the others, nor one that does not "
                        "read",
                "tests": [
                    "test_fairness.py::test_flooding_client_does_not_starve_others",
                    "test_backpressure.py::test_other_clients_served_while_one_does_not_read",
                ],
                "read": "docs/03-epoll-edge.md#starvation-and-the-budget",
                "hint": ("draining one client to EAGAIN can take forever if it never stops "
                         "sending: stop after a budget of bytes and come back to it after the "
                         "others"),
                "minutes": 60,
            },
            dict(STAGE1_SUITE,
                 read="docs/03-epoll-edge.md#what-the-tests-check",
                 hint=("the EOF is reported with the last bytes; a connection that has read it "
                       "must still send what it owes before it closes"),
                 minutes=45),
        ],
    },
    4: {
        "dir": "04-coroutines",
        "milestones": [
            {
                "key": "task",
                "asks": "your Task<T> passes the reference stage's task tests: values, laziness, "
                        "exceptions, a wait, a chain, destruction",
                "tests": [f"unit::{TASK_TESTS}::{name}" for name in (
                    "a task delivers its value to the coroutine awaiting it",
                    "a task's value can be move-only",
                    "a task is lazy: it does not run until awaited",
                    "an exception leaves the task and is thrown in the awaiting coroutine",
                    "a task that waits resumes its awaiter when it ends, with the value",
                    "a task that waited resumes an awaiter that itself waited, up a chain of two",
                    "destroying a suspended chain frees every frame in it",
                )],
                "read": "docs/04-coroutines.md#a-task-the-textbook-way",
                "hint": ("start lazy (initial_suspend suspends), keep the awaiting coroutine's "
                         "handle in the promise, and resume it from final_suspend"),
                "minutes": 120,
            },
            {
                "key": "constant-stack",
                "asks": "a million awaits that finish at once run in constant stack",
                "tests": [f"unit::{TASK_TESTS}::a million awaits that finish at once run in "
                          f"constant stack"],
                "read": "docs/04-coroutines.md#this-stages-task-hand-over-with-a-bool",
                "hint": ("a task that finishes without waiting must not resume its awaiter from "
                         "inside its own final_suspend: let await_suspend return false instead "
                         "(the grader compiles the tests at -O1, where g++ makes no tail call "
                         "of symmetric transfer)"),
                "minutes": 60,
            },
            {
                "key": "echo",
                "asks": "the echo runs as one coroutine per connection on your reactor: one "
                        "client, then many",
                "tests": ["binary::coroutines", *STEPS[0]["tests"], *STEPS[1]["tests"]],
                "read": "docs/04-coroutines.md#the-awaitable-socket",
                "hint": ("a read that would block suspends the coroutine and registers its handle "
                         "with the reactor; the reactor resumes it when epoll reports the socket"),
                "minutes": 180,
            },
            dict(STAGE1_SUITE,
                 read="docs/04-coroutines.md#errors",
                 hint=("every way out of a connection's coroutine, an exception included, must "
                       "close its socket and leave the reactor"),
                 minutes=60),
        ],
    },
    5: {
        "dir": "05-full-server",
        "milestones": [
            {
                "key": "threads",
                "asks": "--threads N runs N loops, each accepting on its own listener, and the "
                        "work spreads over them",
                "tests": [
                    "test_stage5.py::test_work_spreads_over_threads",
                    "test_stage5.py::test_every_loop_accepts_and_counters_are_logged_at_shutdown",
                    "test_cli.py::test_bad_stage5_arguments_rejected_with_exit_2",
                    "test_emfile.py::test_emfile_with_several_threads_does_not_spin",
                    "test_listener_failure.py::test_listener_failure_with_several_threads_exits_1",
                ],
                "read": "docs/05-full-server.md#one-loop-per-core",
                "hint": ("one reactor per thread, each with its own SO_REUSEPORT listener on the "
                         "same port: the kernel spreads the connections, and nothing is shared"),
                "minutes": 150,
            },
            {
                "key": "idle-timeout",
                "asks": "--idle-timeout-ms closes a connection silent that long, and only those",
                "tests": [
                    "test_stage5.py::test_idle_timeout_closes_idle_connection",
                    "test_stage5.py::test_idle_timeout_spares_busy_connections",
                ],
                "read": "docs/05-full-server.md#the-idle-timeout",
                "hint": ("a wait with a deadline: the read resumes either with data or when a "
                         "timer fires, and whichever comes first cancels the other"),
                "minutes": 120,
            },
            {
                "key": "connection-limit",
                "asks": "--max-connections N: the connection past N is closed at once",
                "tests": ["test_stage5.py::test_max_connections_excess_closed_at_once"],
                "read": "docs/05-full-server.md#the-connection-limit",
                "hint": ("the count is shared by every loop: reserve a place before serving, with "
                         "one atomic step, and give it back when the connection ends"),
                "minutes": 60,
            },
            {
                "key": "graceful-shutdown",
                "asks": "SIGTERM or SIGINT: stop accepting, finish the open connections within "
                        "--shutdown-timeout-ms, log the counters, exit 0",
                "tests": [
                    "test_stage5.py::test_graceful_shutdown_finishes_open_connections",
                    "test_stage5.py::test_shutdown_serves_connections_already_queued",
                    "test_stage5.py::test_shutdown_timeout_force_closes_lingering_clients",
                    "test_stage5.py::test_shutdown_survives_log_pipe_whose_reader_is_gone",
                ],
                "read": "docs/05-full-server.md#graceful-shutdown-step-by-step",
                "hint": ("block the signals and read them from a signalfd in the main thread; tell "
                         "each loop through its eventfd, and let each drain its own listener"),
                "minutes": 150,
            },
            {
                "key": "second-signal",
                "asks": "a second signal during the shutdown closes what is left at once",
                "tests": [
                    "test_stage5.py::test_second_signal_closes_remaining_connections_at_once",
                ],
                "read": "docs/05-full-server.md#finishing-the-open-connections-with-a-deadline",
                "hint": ("the shutdown has two levels, drain and stop now; a second signal raises "
                         "it to the second, which the deadline would have reached anyway"),
                "minutes": 30,
            },
            {
                "key": "suite",
                "asks": "the whole stage-5 suite, every earlier behaviour on several threads",
                "tests": [SUITE],
                "read": "docs/05-full-server.md#what-the-tests-check",
                "hint": ("run the failing test alone with `make check-lab-5 M=6` and read its "
                         "one-line reason: every earlier lab's rule still holds on each thread"),
                "minutes": 60,
            },
        ],
    },
    6: {
        "dir": "06-io-uring",
        # Graded only where a process can set up an io_uring (tools/lab.py says why not).
        "needs": "io_uring",
        "milestones": [
            {
                "key": "ring",
                "asks": "each loop waits on an io_uring of its own, epoll gone, with a receive "
                        "waiting in the ring for every client",
                "tests": ["lab/test_structure.py::test_io_through_io_uring"],
                "read": "docs/06-io-uring.md#what-each-operation-replaces",
                "hint": ("give each loop a ring in place of its epoll descriptor, and turn every "
                         "wait-then-call into one request: accept, recv and send are submitted, "
                         "and the coroutine resumes on the completion"),
                "minutes": 300,
            },
            {
                "key": "buffer-ring",
                "asks": "an idle connection holds no buffer: what it receives lands in the "
                        "loop's buffer ring",
                "tests": ["lab/test_structure.py::test_idle_connections_hold_no_buffer"],
                "read": "docs/06-io-uring.md#receiving-into-the-loops-buffer-ring",
                "hint": ("a receive in flight owns its buffer until it completes, so a buffer per "
                         "connection is memory per idle connection: register a buffer ring per "
                         "loop and let the kernel pick a buffer when the bytes come "
                         "(IOSQE_BUFFER_SELECT)"),
                "minutes": 120,
            },
            {
                "key": "multishot",
                "asks": "one receive request per connection serves all of its messages "
                        "(multishot)",
                "tests": ["lab/test_structure.py::test_one_receive_serves_many_messages"],
                "read": "docs/06-io-uring.md#receiving-into-the-loops-buffer-ring",
                "hint": ("submit the receive once, multishot, as the accept is: it completes once "
                         "per message for as long as IORING_CQE_F_MORE is set, and only a "
                         "completion without that flag needs a new request"),
                "minutes": 60,
            },
            {
                "key": "suite",
                "asks": "the whole stage-5 suite on io_uring: every earlier behaviour, "
                        "backpressure and shutdown included",
                "tests": [SUITE],
                "read": "docs/06-io-uring.md#lifetimes-and-cancellation",
                "hint": ("a buffer or a connection named by a request must outlive its "
                         "completion: cancel what is in flight and wait for each completion "
                         "before you free or close"),
                "minutes": 120,
            },
        ],
    },
}
