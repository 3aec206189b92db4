#include "options.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

Command parse(std::vector<std::string_view> args) {
  return parse_command_line(args, 3);  // as on a machine with 3 usable cores
}

void check_usage_error(std::vector<std::string_view> args, std::string_view expected_error) {
  CAPTURE(expected_error);
  const Command command = parse(args);
  CHECK(command.action == Command::Action::kUsageError);
  CHECK(command.error == expected_error);
}

}  // namespace

TEST_CASE("no arguments means 127.0.0.1:7000, never a public address") {
  const Command command = parse({});
  CHECK(command.action == Command::Action::kRun);
  CHECK(command.options.host == "127.0.0.1");
  CHECK(command.options.port == 7000);
}

TEST_CASE("--host and --port take the next argument as their value") {
  const Command command = parse({"--port", "0", "--host", "::1"});
  REQUIRE(command.action == Command::Action::kRun);
  CHECK(command.options.host == "::1");
  CHECK(command.options.port == 0);
}

TEST_CASE("the port range ends at 65535") {
  CHECK(parse({"--port", "65535"}).options.port == 65535);
  check_usage_error({"--port", "65536"}, "--port: '65536' is not a port number (0 to 65535)");
  check_usage_error({"--port", "70000"}, "--port: '70000' is not a port number (0 to 65535)");
  check_usage_error({"--port", "99999999999999999999"},
                    "--port: '99999999999999999999' is not a port number (0 to 65535)");
}

TEST_CASE("a port is a whole decimal number: no sign, no spaces, no trailing text") {
  for (std::string_view bad : {"abc", "", "-1", "+80", " 80", "80 ", "80x", "0x50", "8.0"}) {
    CAPTURE(bad);
    const Command command = parse({"--port", bad});
    CHECK(command.action == Command::Action::kUsageError);
  }
}

TEST_CASE("a host must be a numeric address, so no DNS lookup can bind something unexpected") {
  check_usage_error({"--host", "localhost"},
                    "--host: 'localhost' is not a numeric IPv4 or IPv6 address");
  check_usage_error({"--host", "127.0.0.256"},
                    "--host: '127.0.0.256' is not a numeric IPv4 or IPv6 address");
  CHECK(parse({"--host", "0.0.0.0"}).action == Command::Action::kRun);
}

TEST_CASE("a flag without its value is an error, not a read past the end") {
  check_usage_error({"--port"}, "--port needs a value");
  check_usage_error({"--host", "::1", "--host"}, "--host needs a value");
}

TEST_CASE("unknown flags and stray arguments are errors") {
  check_usage_error({"--bogus"}, "unknown option '--bogus'");
  check_usage_error({"--port=7000"}, "unknown option '--port=7000'");
  check_usage_error({"-p", "7000"}, "unknown option '-p'");
  check_usage_error({"7000"}, "unexpected argument '7000'");
}

TEST_CASE("--help wins over the arguments after it, and the usage names every flag") {
  CHECK(parse({"--help", "--bogus"}).action == Command::Action::kHelp);
  CHECK(parse({"--port", "1", "--help"}).action == Command::Action::kHelp);
  const std::string text = usage("server");
  CHECK(text.starts_with("usage: server "));
  for (std::string_view flag : {"--host", "--port", "--help"}) {
    CAPTURE(flag);
    CHECK(text.find(flag) != std::string::npos);
  }
}

TEST_CASE("stage 5's flags default to: one loop per core, no idle timeout, no limit, 5 s, info") {
  const Options options = parse({}).options;
  CHECK(options.threads == 3);
  CHECK(options.idle_timeout.count() == 0);
  CHECK(options.max_connections == 0);
  CHECK(options.shutdown_timeout.count() == 5000);
  CHECK(options.log_level == LogLevel::kInfo);
}

TEST_CASE("stage 5's flags take their values") {
  const Command command = parse({"--threads", "2", "--idle-timeout-ms", "300", "--max-connections",
                                 "4", "--shutdown-timeout-ms", "0", "--log-level", "debug"});
  REQUIRE(command.action == Command::Action::kRun);
  CHECK(command.options.threads == 2);
  CHECK(command.options.idle_timeout.count() == 300);
  CHECK(command.options.max_connections == 4);
  CHECK(command.options.shutdown_timeout.count() == 0);
  CHECK(command.options.log_level == LogLevel::kDebug);
}

TEST_CASE("a thread count is 1 to kMaxThreads") {
  CHECK(parse({"--threads", "1"}).options.threads == 1);
  CHECK(parse({"--threads", "1024"}).options.threads == kMaxThreads);
  check_usage_error({"--threads", "0"}, "--threads: '0' is not a thread count (1 to 1024)");
  check_usage_error({"--threads", "1025"}, "--threads: '1025' is not a thread count (1 to 1024)");
  check_usage_error({"--threads", "two"}, "--threads: 'two' is not a thread count (1 to 1024)");
  check_usage_error({"--threads"}, "--threads needs a value");
}

TEST_CASE("timeouts are whole milliseconds, no sign and no unit, up to a day") {
  CHECK(parse({"--idle-timeout-ms", "86400000"}).options.idle_timeout.count() == 86400000);
  check_usage_error({"--idle-timeout-ms", "-5"},
                    "--idle-timeout-ms: '-5' is not a number of milliseconds (0 to 86400000)");
  check_usage_error({"--idle-timeout-ms", "100ms"},
                    "--idle-timeout-ms: '100ms' is not a number of milliseconds (0 to 86400000)");
  check_usage_error(
      {"--shutdown-timeout-ms", "86400001"},
      "--shutdown-timeout-ms: '86400001' is not a number of milliseconds (0 to 86400000)");
  check_usage_error({"--shutdown-timeout-ms", "-1"},
                    "--shutdown-timeout-ms: '-1' is not a number of milliseconds (0 to 86400000)");
}

TEST_CASE("the connection limit is a count, 0 for none") {
  CHECK(parse({"--max-connections", "0"}).options.max_connections == 0);
  CHECK(parse({"--max-connections", "100000"}).options.max_connections == 100000);
  check_usage_error({"--max-connections", "many"},
                    "--max-connections: 'many' is not a connection count (0 for no limit)");
  check_usage_error({"--max-connections", "+4"},
                    "--max-connections: '+4' is not a connection count (0 for no limit)");
}

TEST_CASE("the log level is one of four words") {
  // No structured binding: clang 14 cannot capture one in doctest's CAPTURE lambda.
  for (const auto& expected :
       {std::pair{"error", LogLevel::kError}, std::pair{"warn", LogLevel::kWarn},
        std::pair{"info", LogLevel::kInfo}, std::pair{"debug", LogLevel::kDebug}}) {
    CAPTURE(expected.first);
    CHECK(parse({"--log-level", expected.first}).options.log_level == expected.second);
  }
  check_usage_error({"--log-level", "verbose"},
                    "--log-level: 'verbose' is not a log level (error, warn, info or debug)");
  check_usage_error({"--log-level", "INFO"},
                    "--log-level: 'INFO' is not a log level (error, warn, info or debug)");
}
