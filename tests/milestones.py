"""Lab 1's milestones: chapter 01's road from a minimal poll loop to stage 1, one step at a time.

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
    },
    {
        "key": "backpressure",
        "asks": "a client that does not read is slowed down, not buffered without bound",
        "tests": [
            "test_backpressure.py::test_non_reading_client_memory_stays_bounded",
            "test_backpressure.py::test_other_clients_served_while_one_does_not_read",
        ],
        "anchor": "backpressure",
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
    },
    {
        "key": "accept-errors",
        "asks": "out of descriptors, or a failed listener: neither spins; shed load, or exit 1",
        "tests": [
            "test_emfile.py::test_emfile_does_not_spin_and_service_resumes",
            "test_listener_failure.py::test_listener_failure_exits_1_not_spins",
        ],
        "anchor": "loopcpp-accepting",
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
