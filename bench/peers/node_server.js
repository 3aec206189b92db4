// Benchmark peer: a TCP echo server on Node.js's `net` module.
//
// Not a course stage: `make bench` compares the stages with what a reader might pick instead.
// It keeps the course's server contract, so the same runner and the same tests drive it.
// Single-threaded: --threads accepts only 1. (Node 20's net has no reusePort option, and
// `cluster` would put a primary process between the kernel and the workers, which is a
// different design from one SO_REUSEPORT listener per loop.)
//
// Run: node node_server.js [--host ADDR] [--port N] [--threads 1]

'use strict';

const net = require('net');

const PROGRAM = 'node_server';

const USAGE = `usage: ${PROGRAM} [--host ADDR] [--port N] [--threads 1]

A TCP echo server on Node.js net: a benchmark peer of the course.

  --host ADDR   numeric IPv4 or IPv6 address to listen on (default 127.0.0.1)
  --port N      TCP port to listen on, 0 to pick a free one (default 7000)
  --threads N   event loops; this peer has one, so only 1 is accepted (default 1)
  --help        print this help and exit
`;

class UsageError extends Error {}

// Accepts only a whole decimal number in [min, max]: no sign, no spaces, no trailing text.
function parseNumber(flag, text, min, max) {
  const value = /^[0-9]+$/.test(text) ? Number(text) : NaN;
  if (!(value >= min && value <= max)) {
    throw new UsageError(`${flag}: '${text}' is not a number from ${min} to ${max}`);
  }
  return value;
}

// Returns the options, or null after --help.
function parseCommandLine(args) {
  const options = { host: '127.0.0.1', port: 7000, threads: 1 };
  for (let i = 0; i < args.length; i++) {
    const flag = args[i];
    if (flag === '--help') return null;
    if (flag !== '--host' && flag !== '--port' && flag !== '--threads') {
      const what = flag.startsWith('-') ? 'unknown option' : 'unexpected argument';
      throw new UsageError(`${what} '${flag}'`);
    }
    if (i + 1 === args.length) throw new UsageError(`${flag} needs a value`);
    const value = args[++i];
    if (flag === '--host') {
      // net.isIP recognises numeric addresses only, so listen() never asks DNS.
      if (net.isIP(value) === 0) {
        throw new UsageError(`--host: '${value}' is not a numeric IPv4 or IPv6 address`);
      }
      options.host = value;
    } else if (flag === '--port') {
      options.port = parseNumber(flag, value, 0, 65535);
    } else {
      options.threads = parseNumber(flag, value, 1, 1024);
      if (options.threads !== 1) {
        throw new UsageError(`--threads: '${value}': this peer has one event loop, so only 1`);
      }
    }
  }
  return options;
}

// One client. Node queues in user space whatever the kernel does not take at once; write()
// returns false once that queue passes the socket's highWaterMark (16 KiB), and 'drain' says
// it has been flushed. Pausing reads in between is the backpressure.
function echo(socket) {
  // An echo answers small writes at once; Nagle's algorithm would hold them back.
  socket.setNoDelay(true);
  socket.on('data', (chunk) => {
    if (!socket.write(chunk)) socket.pause();
  });
  socket.on('drain', () => socket.resume());
  // The client half-closed (allowHalfOpen keeps our side open): end() sends FIN after the
  // queued echo is written.
  socket.on('end', () => socket.end());
  // A reset ends this client only. Without a listener, the 'error' event would be thrown and
  // kill the process. (Node ignores SIGPIPE itself.)
  socket.on('error', () => socket.destroy());
}

function main() {
  let options;
  try {
    options = parseCommandLine(process.argv.slice(2));
  } catch (e) {
    if (!(e instanceof UsageError)) throw e;
    process.stderr.write(`error: ${e.message}\n${USAGE}`);
    process.exitCode = 2;
    return;
  }
  if (options === null) {
    process.stdout.write(USAGE);
    return;
  }
  const server = net.createServer({ allowHalfOpen: true }, echo);
  server.on('error', (e) => {
    // Only listen() fails here, e.g. "listen EADDRINUSE: address already in use 127.0.0.1:7000".
    // (Node sets SO_REUSEADDR on listening sockets itself.)
    process.stderr.write(`error: ${e.message}\n`);
    process.exit(1);
  });
  // 511 is Node's default backlog; the kernel caps it at net.core.somaxconn.
  server.listen({ host: options.host, port: options.port, backlog: 511 }, () => {
    const { address, port } = server.address();
    const host = net.isIPv6(address) ? `[${address}]` : address;
    // Writes to a pipe or a file are synchronous on Linux, so this line is out when it returns.
    process.stdout.write(`listening on ${host}:${port}\n`);
  });
}

main();
