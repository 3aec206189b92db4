#include "report.hpp"

#include <doctest/doctest.h>

namespace {

RunResult passing_run() {
  RunResult result;
  result.options.duration_s = 2;
  result.options.size = 1024;
  result.messages = 2048;
  result.round_trips.record(10'000);
  result.round_trips.record(30'000);
  return result;
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

}  // namespace

TEST_CASE("rates are per second of the measured window; MiB/s counts one direction") {
  const RunResult result = passing_run();
  CHECK(result.messages_per_s() == 1024);
  CHECK(result.mib_per_s() == 1.0);
  CHECK(result.ok());
}

TEST_CASE("no message completed is a failure even without errors") {
  RunResult result = passing_run();
  result.messages = 0;
  CHECK_FALSE(result.ok());
  CHECK(contains(text_report(result), "FAILED: no message completed"));
}

TEST_CASE("the JSON report keeps its key names") {
  const std::string json = json_report(passing_run());
  for (const char* key :
       {"\"host\":\"127.0.0.1\"", "\"port\":7000", "\"idle\":0", "\"connections\":1", "\"depth\":1",
        "\"size\":1024", "\"duration_s\":2.000", "\"messages\":2048", "\"messages_per_s\":1024.0",
        "\"mib_per_s\":1.000", "\"rtt_us\":{\"p50\":10.0,", "\"max\":30.0}",
        "\"errors\":{\"mismatches\":0,\"early_closes\":0,\"connect_failures\":0,",
        "\"first_mismatch\":null", "\"first_error\":null", "\"ok\":true}"}) {
    CAPTURE(key);
    CHECK(contains(json, key));
  }
}

TEST_CASE("a mismatch is reported with its connection, offset, and both bytes") {
  RunResult result = passing_run();
  result.errors.mismatches = 1;
  result.first_mismatch = FirstMismatch{3, false, 1000, 0x3a, 0xc5};
  CHECK(contains(text_report(result), "connection 3 at offset 1000: expected 0x3a, got 0xc5"));
  CHECK(contains(json_report(result),
                 "\"first_mismatch\":{\"connection\":3,\"idle\":false,\"offset\":1000,"
                 "\"expected\":58,\"got\":197}"));
  CHECK(contains(json_report(result), "\"ok\":false"));
}

TEST_CASE("an error line with quotes stays valid JSON") {
  RunResult result = passing_run();
  result.errors.early_closes = 1;
  result.first_error = "connection 0: \"odd\"\n";
  CHECK(contains(json_report(result), "\"first_error\":\"connection 0: \\\"odd\\\"\\u000a\""));
}
