#include "options.hpp"

#include <doctest/doctest.h>

#include <vector>

namespace {

Command parse(std::vector<std::string_view> args) {
  return parse_command_line(args);
}

void check_usage_error(std::vector<std::string_view> args, std::string_view expected_error) {
  CAPTURE(expected_error);
  const Command command = parse(args);
  CHECK(command.action == Command::Action::kUsageError);
  CHECK(command.error == expected_error);
}

}  // namespace

TEST_CASE("no arguments: one connection, depth 1, 64 bytes, 5 s after 1 s warm-up, to :7000") {
  const Command command = parse({});
  REQUIRE(command.action == Command::Action::kRun);
  const Options& o = command.options;
  CHECK(o.host == "127.0.0.1");
  CHECK(o.port == 7000);
  CHECK(o.idle == 0);
  CHECK(o.connections == 1);
  CHECK(o.depth == 1);
  CHECK(o.size == 64);
  CHECK(o.duration_s == 5);
  CHECK(o.warmup_s == 1);
  CHECK(o.seed == 1);
  CHECK(o.rcvbuf == 0);
  CHECK_FALSE(o.json);
  CHECK_FALSE(o.quiet);
}

TEST_CASE("every flag takes the next argument as its value") {
  const Command command =
      parse({"--host",        "::1",  "--port",   "9000",   "--idle", "5000",
             "--connections", "50",   "--depth",  "16",     "--size", "16384",
             "--duration",    "0.25", "--warmup", "0",      "--seed", "18446744073709551615",
             "--rcvbuf",      "4096", "--json",   "--quiet"});
  REQUIRE(command.action == Command::Action::kRun);
  CHECK(command.options == Options{.host = "::1",
                                   .port = 9000,
                                   .idle = 5000,
                                   .connections = 50,
                                   .depth = 16,
                                   .size = 16384,
                                   .duration_s = 0.25,
                                   .warmup_s = 0,
                                   .seed = 18446744073709551615ull,
                                   .rcvbuf = 4096,
                                   .json = true,
                                   .quiet = true});
}

TEST_CASE("--help asks for the help, whatever follows it") {
  CHECK(parse({"--depth", "4", "--help"}).action == Command::Action::kHelp);
  CHECK(parse({"--help", "--bogus"}).action == Command::Action::kHelp);
}

TEST_CASE("counts are whole numbers within their range") {
  check_usage_error({"--connections", "0"},
                    "--connections: '0' is not a whole number from 1 to 100000");
  check_usage_error({"--depth", "0"}, "--depth: '0' is not a whole number from 1 to 4096");
  check_usage_error({"--size", "0"}, "--size: '0' is not a whole number from 1 to 67108864");
  check_usage_error({"--port", "0"}, "--port: '0' is not a whole number from 1 to 65535");
  check_usage_error({"--port", "65536"}, "--port: '65536' is not a whole number from 1 to 65535");
  for (std::string_view bad : {"", "-1", "+3", " 3", "3 ", "3x", "0x10", "1.5", "1e3"}) {
    CAPTURE(bad);
    CHECK(parse({"--idle", bad}).action == Command::Action::kUsageError);
  }
}

TEST_CASE("seconds may have fractions, but not be negative, infinite or not a number") {
  CHECK(parse({"--duration", "1.5"}).options.duration_s == 1.5);
  check_usage_error({"--duration", "0"},
                    "--duration: '0' is not a number of seconds above 0 to 86400");
  check_usage_error({"--warmup", "-1"},
                    "--warmup: '-1' is not a number of seconds from 0 to 86400");
  for (std::string_view bad : {"nan", "inf", "", "1s", "1e9", " 1"}) {
    CAPTURE(bad);
    CHECK(parse({"--duration", bad}).action == Command::Action::kUsageError);
  }
}

TEST_CASE("a host must be a numeric address: no DNS lookup") {
  check_usage_error({"--host", "localhost"},
                    "--host: 'localhost' is not a numeric IPv4 or IPv6 address");
  CHECK(parse({"--host", "10.1.2.3"}).options.host == "10.1.2.3");
}

TEST_CASE("a flag without its value, an unknown flag and a stray word are errors") {
  check_usage_error({"--depth"}, "--depth needs a value");
  check_usage_error({"--size", "8", "--seed"}, "--seed needs a value");
  check_usage_error({"--threads", "2"}, "unknown option '--threads'");
  check_usage_error({"7000"}, "unexpected argument '7000'");
}
