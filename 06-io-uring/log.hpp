#pragma once
// One-line logs on stderr: "info: loop 1: 17 connections accepted".

#include <cstdint>
#include <string>
#include <string_view>

enum class LogLevel { kError, kWarn, kInfo, kDebug };

// Parses "error", "warn", "info" or "debug"; false for anything else.
bool parse_log_level(std::string_view text, LogLevel& level);

// Set once, before any thread starts, and only read after that.
void set_log_level(LogLevel level);
bool log_enabled(LogLevel level);

// Writes "<level>: <message>\n" to stderr in one write(2) call. Lines from several threads
// then stay whole where the kernel promises it: into a pipe for writes up to PIPE_BUF bytes
// (4096 on Linux; our lines are far shorter), and into a regular file opened with O_APPEND. A
// terminal or a socket makes no such promise. Does nothing below the level set; never throws,
// and never stops the server: a line that cannot be written is dropped.
void log(LogLevel level, std::string_view message);

// "1 connection", "2 connections": a count and its noun, for log lines.
std::string count_of(std::uint64_t n, std::string_view noun);
