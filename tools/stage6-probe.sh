#!/usr/bin/env bash
# Can stage 6 run here? Starts its server on a free port and waits for one of its two answers.
#
#     tools/stage6-probe.sh SERVER [SECONDS]
#
# Exit 0, printing nothing: the server printed `listening on`, so io_uring works here; the
#   server is then stopped with SIGTERM and waited for.
# Exit 3: stage 6 cannot run here; stdout says why in one line: the server's own
#   `error: io_uring unavailable: ...` reason (without "error: "), or that SERVER is not built.
# Exit 1: the server failed in some other way (it exited without that line, crashed, or printed
#   nothing within SECONDS, default 10); stderr says so. That is a broken stage 6, not a machine
#   without io_uring, so nobody should fall back to stage 5 quietly.
#
# Bash and coreutils only: `make run` uses it on machines that have nothing but g++ and make.
set -u

server=${1:?usage: tools/stage6-probe.sh SERVER [SECONDS]}
seconds=${2:-10}
if [ ! -x "$server" ]; then
  echo "$server is not built"
  exit 3
fi

scratch=$(mktemp -d) || exit 1
trap 'rm -rf "$scratch"' EXIT
# Files, not pipes: nobody reads the server's stderr while it runs, and a full pipe would block it.
"$server" --port 0 --threads 1 </dev/null >"$scratch/out" 2>"$scratch/err" &
pid=$!

# Bash reaps its children as they exit, so `kill -0` fails once the server has gone.
steps=$((seconds * 20))
for ((step = 0; step < steps; step++)); do
  if grep -q '^listening on ' "$scratch/out"; then
    kill -TERM "$pid"
    wait "$pid"
    exit 0
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    wait "$pid"
    status=$?
    # The server may have printed its line just before it exited.
    grep -q '^listening on ' "$scratch/out" && exit 0
    reason=$(grep -m1 '^error: io_uring unavailable: ' "$scratch/err")
    if [ -n "$reason" ]; then
      echo "${reason#error: }"
      exit 3
    fi
    echo "stage6-probe: $server exited with status $status before printing 'listening on';" \
      "its stderr:" >&2
    head -c 2000 "$scratch/err" >&2
    exit 1
  fi
  sleep 0.05
done

echo "stage6-probe: $server printed no 'listening on' within $seconds s; stopping it" >&2
kill -TERM "$pid"
for ((step = 0; step < 40; step++)); do
  kill -0 "$pid" 2>/dev/null || break
  sleep 0.05
done
kill -KILL "$pid" 2>/dev/null
wait "$pid"
exit 1
