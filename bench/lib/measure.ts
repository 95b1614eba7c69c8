import { spawn } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import type { Command, Measurement } from './types';

/**
 * Runs a command under a small python3 wrapper that times it and reads getrusage(RUSAGE_CHILDREN) once it has
 * exited: wall time, user and system CPU of the whole process tree, and the peak RSS of its biggest process.
 * A wrapper of its own (not the bench's Node process) so that a child's ru_maxrss is not inherited from a big
 * parent at fork time.
 */
const WRAPPER = `
import json, resource, subprocess, sys, time
out = sys.argv[1]
t0 = time.monotonic()
p = subprocess.run(sys.argv[2:])
wall = time.monotonic() - t0
r = resource.getrusage(resource.RUSAGE_CHILDREN)
with open(out, "w") as f:
    json.dump({"wall": wall, "user": r.ru_utime, "sys": r.ru_stime, "maxrss": r.ru_maxrss, "code": p.returncode}, f)
`;

export async function measure(command: Command, timeoutMs = 30 * 60_000): Promise<Measurement> {
  const resultFile = path.join(os.tmpdir(), `tributary-bench-${process.pid}-${Date.now()}.json`);
  const child = spawn('python3', ['-c', WRAPPER, resultFile, command.cmd, ...command.args], {
    cwd: command.cwd,
    env: { ...process.env, ...command.env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (d: string) => (stdout = (stdout + d).slice(-20_000)));
  child.stderr.setEncoding('utf8').on('data', (d: string) => (stderr = (stderr + d).slice(-20_000)));
  const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
  const code = await new Promise<number>((resolve) => child.once('close', (c) => resolve(c ?? -1)));
  clearTimeout(timer);
  let result: { wall: number; user: number; sys: number; maxrss: number; code: number };
  try {
    result = JSON.parse(fs.readFileSync(resultFile, 'utf8')) as typeof result;
    fs.rmSync(resultFile, { force: true });
  } catch {
    throw new Error(`${command.cmd} could not be measured (wrapper exit ${code}): ${stderr.slice(-2000)}`);
  }
  return {
    wallMs: result.wall * 1000,
    userMs: result.user * 1000,
    sysMs: result.sys * 1000,
    peakRssKb: result.maxrss,
    exitCode: result.code,
    stdout,
    stderr,
  };
}

/** CPU time (user + system, ms) the given processes have used so far, from /proc; 0 for one that is gone. */
export function cpuMsOf(pids: Array<number | undefined>): number {
  const tick = 1000 / 100; // USER_HZ is 100 on Linux
  let total = 0;
  for (const pid of pids) {
    if (pid === undefined) continue;
    try {
      const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
      const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
      total += (Number(fields[11]) + Number(fields[12])) * tick; // utime, stime
    } catch {
      // gone
    }
  }
  return total;
}
