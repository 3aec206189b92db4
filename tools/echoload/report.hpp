#pragma once
// The report of a run: text for people, or one JSON object for scripts (tools, plots, docs).

#include <string>

#include "load.hpp"

// Several lines: the parameters, messages/s, MiB/s, round-trip percentiles, errors, the verdict.
std::string text_report(const RunResult& result);

// One line of JSON with stable key names; a later figure adds a key and changes none.
std::string json_report(const RunResult& result);
