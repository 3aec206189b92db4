#include "report.hpp"

#include <cstdio>
#include <sstream>

namespace {

// `value` with `places` digits after the point, in the C locale's format ("12.5", never "12,5").
std::string fixed(double value, int places) {
  char text[64];
  std::snprintf(text, sizeof text, "%.*f", places, value);
  return text;
}

// A round trip in microseconds, from the histogram's nanoseconds.
std::string micros(std::uint64_t nanoseconds) {
  return fixed(nanoseconds / 1000.0, 1);
}

std::string hex_byte(std::uint8_t byte) {
  char text[8];
  std::snprintf(text, sizeof text, "0x%02x", byte);
  return text;
}

std::string describe(const FirstMismatch& m) {
  std::string where = (m.idle ? "idle connection " : "connection ") + std::to_string(m.connection) +
                      " at offset " + std::to_string(m.offset);
  const std::string expected = m.expected ? hex_byte(*m.expected) : "nothing (none was sent)";
  return where + ": expected " + expected + ", got " + hex_byte(m.got);
}

std::string describe(const ErrorCounts& e) {
  if (e.total() == 0) return "none";
  return "mismatches " + std::to_string(e.mismatches) + ", early closes " +
         std::to_string(e.early_closes) + ", connect failures " +
         std::to_string(e.connect_failures) + ", stalled " + std::to_string(e.stalled);
}

std::string verdict(const RunResult& result) {
  if (result.ok()) return "ok";
  if (result.errors.total() == 0) return "FAILED: no message completed in the measured window";
  return "FAILED";
}

// A JSON string. Our strings are addresses and strerror() text, but escape them all the same.
std::string json_string(const std::string& text) {
  std::string out = "\"";
  for (const char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char escaped[8];
      std::snprintf(escaped, sizeof escaped, "\\u%04x", c);
      out += escaped;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

std::string json_mismatch(const std::optional<FirstMismatch>& m) {
  if (!m) return "null";
  return "{\"connection\":" + std::to_string(m->connection) +
         ",\"idle\":" + (m->idle ? "true" : "false") + ",\"offset\":" + std::to_string(m->offset) +
         ",\"expected\":" + (m->expected ? std::to_string(*m->expected) : "null") +
         ",\"got\":" + std::to_string(m->got) + "}";
}

}  // namespace

std::string text_report(const RunResult& r) {
  const Options& o = r.options;
  const LatencyHistogram& rtt = r.round_trips;
  std::ostringstream out;
  out << "server      " << o.host << " port " << o.port << "\n"
      << "load        " << o.idle << " idle + " << o.connections << " active connections, depth "
      << o.depth << ", " << o.size << "-byte messages, seed " << o.seed
      << (o.rcvbuf != 0 ? ", SO_RCVBUF " + std::to_string(o.rcvbuf) : std::string()) << "\n"
      << "time        " << o.warmup_s << " s warm-up, " << o.duration_s << " s measured\n"
      << "messages    " << r.messages << " (" << fixed(r.messages_per_s(), 1) << "/s)\n"
      << "payload     " << fixed(r.mib_per_s(), 2) << " MiB/s echoed (one direction)\n"
      << "round trip  p50 " << micros(rtt.percentile(50)) << " us, p99 "
      << micros(rtt.percentile(99)) << " us, p99.9 " << micros(rtt.percentile(99.9)) << " us, max "
      << micros(rtt.max()) << " us\n"
      << "errors      " << describe(r.errors) << "\n";
  if (r.first_mismatch) out << "mismatch    " << describe(*r.first_mismatch) << "\n";
  if (!r.first_error.empty()) out << "first error " << r.first_error << "\n";
  out << "result      " << verdict(r) << "\n";
  return out.str();
}

std::string json_report(const RunResult& r) {
  const Options& o = r.options;
  const LatencyHistogram& rtt = r.round_trips;
  const ErrorCounts& e = r.errors;
  std::ostringstream out;
  out << "{\"host\":" << json_string(o.host) << ",\"port\":" << o.port << ",\"idle\":" << o.idle
      << ",\"connections\":" << o.connections << ",\"depth\":" << o.depth << ",\"size\":" << o.size
      << ",\"seed\":" << o.seed << ",\"rcvbuf\":" << o.rcvbuf
      << ",\"warmup_s\":" << fixed(o.warmup_s, 3) << ",\"duration_s\":" << fixed(o.duration_s, 3)
      << ",\"messages\":" << r.messages << ",\"messages_per_s\":" << fixed(r.messages_per_s(), 1)
      << ",\"mib_per_s\":" << fixed(r.mib_per_s(), 3)
      << ",\"rtt_us\":{\"p50\":" << micros(rtt.percentile(50))
      << ",\"p99\":" << micros(rtt.percentile(99)) << ",\"p999\":" << micros(rtt.percentile(99.9))
      << ",\"max\":" << micros(rtt.max()) << "}"
      << ",\"errors\":{\"mismatches\":" << e.mismatches << ",\"early_closes\":" << e.early_closes
      << ",\"connect_failures\":" << e.connect_failures << ",\"stalled\":" << e.stalled << "}"
      << ",\"first_mismatch\":" << json_mismatch(r.first_mismatch)
      << ",\"first_error\":" << (r.first_error.empty() ? "null" : json_string(r.first_error))
      << ",\"ok\":" << (r.ok() ? "true" : "false") << "}\n";
  return out.str();
}
