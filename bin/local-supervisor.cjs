#!/usr/bin/env node
// Runs the servers of the local store (DynamoDB Local, s3rver) for one tributary command, and makes sure they never
// outlive it. Started by functions/local/emulators.ts in a process group of its own, so a Ctrl-C in the terminal
// reaches the CLI alone (which then stops at a safe point and still needs these servers to release its lease).
//
// - stdin: the first line is the spec, {"lockFile"?, "children": [{"name", "command", "args", "env"}]}; then the CLI sends
//   nothing more and keeps the pipe open. The pipe closes when the CLI exits, whatever the way, SIGKILL included
//   (the kernel closes its descriptors): then the servers get SIGTERM, SIGKILL 3 s later, and this process exits
//   once they are gone.
// - stdout: one JSON line per event: {"event": "locked", "pid"} at once (under flock, the lock is ours by then),
//   {"event": "started", "children": {name: pid}} once the servers of the spec run, then
//   {"event": "exit", "name", "code", "signal", "stderr"} for a server that stops.
//
// In local mode it runs under flock(1), which holds the data folder's lock: the locked descriptor is inherited by
// this process and passed on to the servers, so the lock is only released when the last of them has exited.
'use strict';
const { spawn } = require('node:child_process');
const fs = require('node:fs');

// Whatever the servers create (database, objects) is for this user only: 0600 files, 0700 folders.
process.umask(0o077);

const children = new Map();
let stopping = false;

function send(event) {
  try {
    process.stdout.write(JSON.stringify(event) + '\n');
  } catch {
    // the CLI is gone; the stdin watch below stops everything
  }
}

function stopAll() {
  if (stopping) return;
  stopping = true;
  if (!children.size) process.exit(0);
  for (const child of children.values()) child.kill('SIGTERM');
  setTimeout(() => {
    for (const child of children.values()) child.kill('SIGKILL');
  }, 3000).unref();
}

/**
 * The descriptor flock(1) holds the lock on (inherited by this process), found by its path on Linux. Node's spawn
 * does not pass descriptors on by itself: it is handed to each server explicitly, so the lock lasts as long as any
 * of them, even one that outlived this process.
 */
function lockDescriptor(file) {
  if (!file) return undefined;
  for (let fd = 3; fd < 64; fd++) {
    try {
      if (fs.readlinkSync(`/proc/self/fd/${fd}`) === file) return fd;
    } catch {
      // not open, or no /proc
    }
  }
  return undefined;
}

function start(spec) {
  const pids = {};
  const lock = lockDescriptor(spec.lockFile);
  for (const c of spec.children) {
    const stdio = ['ignore', 'ignore', 'pipe'];
    if (lock !== undefined) stdio.push(lock);
    const child = spawn(c.command, c.args, { env: c.env, stdio });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (text) => {
      stderr = (stderr + text).slice(-2000);
    });
    children.set(c.name, child);
    pids[c.name] = child.pid;
    child.once('error', (err) => {
      children.delete(c.name);
      send({ event: 'exit', name: c.name, code: null, signal: null, stderr: err.message });
    });
    child.once('exit', (code, signal) => {
      children.delete(c.name);
      if (!stopping) send({ event: 'exit', name: c.name, code, signal, stderr });
      if (stopping && !children.size) process.exit(0);
    });
  }
  send({ event: 'started', pid: process.pid, children: pids });
}

send({ event: 'locked', pid: process.pid });

let buffered = '';
let started = false;
process.stdin.setEncoding('utf8');
process.stdin.on('data', (text) => {
  if (started) return;
  buffered += text;
  const end = buffered.indexOf('\n');
  if (end < 0) return;
  started = true;
  start(JSON.parse(buffered.slice(0, end)));
});
process.stdin.on('end', stopAll);
process.stdin.on('close', stopAll);
process.stdin.on('error', stopAll);
for (const sig of ['SIGTERM', 'SIGINT', 'SIGHUP']) process.on(sig, stopAll);
// Should the stdin watch ever miss the CLI's end: a parent that changed (flock or the CLI died) stops us too.
const parent = process.ppid;
setInterval(() => {
  if (process.ppid !== parent) stopAll();
}, 1000).unref();
