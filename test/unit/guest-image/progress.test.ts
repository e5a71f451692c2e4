// guest-image/progress.sh, the step progress of build.sh, exercised alone
// (sourced into bash; no build runs): nothing at all when stderr is a pipe or
// CI is set; on a terminal (a pseudo-terminal from util-linux `script`), one
// line redrawn per step, cut to the width, and a clean line at the end. Also
// that build.sh numbers its steps 1..N against the total it announces.
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const repo = fileURLToPath(new URL('../../../', import.meta.url));
const progressSh = path.join(repo, 'guest-image/progress.sh');
const buildSh = path.join(repo, 'guest-image/build.sh');
const CLEAR = '\r\x1b[2K';

// Two steps, a log line between them (as build.sh's log() does), output on stdout, the end.
const SCRIPT = `set -euo pipefail
. "$PROGRESS_SH"
progress_init 3
progress_step 1 "kernel package"
echo out
progress_step 2 "a step whose label is far too long for a narrow terminal"
progress_clear; echo "guest-image: a log line" >&2
progress_step 3 modules
progress_end
echo done`;

// --norc: bash reads ~/.bashrc when its stdin looks like a remote shell's socket.
function inPipes(env: Record<string, string>) {
  return spawnSync('bash', ['--norc', '-c', SCRIPT], {
    env: { PATH: process.env.PATH ?? '', PROGRESS_SH: progressSh, ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
    encoding: 'utf8',
  });
}

/** Runs SCRIPT with stdin, stdout and stderr on a pseudo-terminal of 40 columns; returns what the terminal got. */
function onTerminal(env: Record<string, string>): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'tern-unit-progress-sh-'));
  try {
    const file = path.join(dir, 'steps.sh');
    fs.writeFileSync(file, `stty cols 40 rows 24\n${SCRIPT}\n`);
    const r = spawnSync('script', ['-qec', `bash --norc ${file}`, '/dev/null'], {
      env: { PATH: process.env.PATH ?? '', TERM: 'xterm', PROGRESS_SH: progressSh, ...env },
      stdio: ['ignore', 'pipe', 'pipe'],
      encoding: 'utf8',
    });
    expect(r.stderr).toBe('');
    expect(r.status).toBe(0);
    // The terminal turns each \n into \r\n.
    return r.stdout.replace(/\r\n/g, '\n');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

const hasScript = spawnSync('script', ['--version']).status === 0;

describe('guest-image/progress.sh', () => {
  it('prints nothing when stderr is not a terminal, and leaves stdout alone', () => {
    const r = inPipes({});
    expect(r.status).toBe(0);
    expect(r.stdout).toBe('out\ndone\n');
    expect(r.stderr).toBe('guest-image: a log line\n');
  });

  it.skipIf(!hasScript)('redraws one line per step on a terminal, cut to its width, and ends on a clean line', () => {
    const t = onTerminal({});
    // (stdout shares the terminal: build.sh writes to it only after progress_end.)
    expect(t).toContain(`${CLEAR}guest-image: [1/3] kernel package (0 s)out\n`);
    // 40 columns: the line is cut to 39 characters.
    expect(t).toContain(`${CLEAR}guest-image: [2/3] a step whose label i${CLEAR}`);
    expect(t).not.toContain('far too long');
    expect(t).toContain(`${CLEAR}guest-image: a log line\n`);
    expect(t.endsWith(`${CLEAR}guest-image: [3/3] modules (0 s)${CLEAR}done\n`)).toBe(true);
  });

  it.skipIf(!hasScript)('prints nothing on a terminal when CI is set', () => {
    const t = onTerminal({ CI: '1' });
    expect(t).not.toContain('\x1b[2K');
    expect(t).not.toContain('[1/3]');
    expect(t).toBe('out\nguest-image: a log line\ndone\n');
  });
});

describe('guest-image/build.sh steps', () => {
  it('are numbered 1..N in order against the total given to progress_init', () => {
    const text = fs.readFileSync(buildSh, 'utf8');
    const total = Number(/^progress_init (\d+)$/m.exec(text)?.[1]);
    const steps = [...text.matchAll(/^progress_step (\d+) /gm)].map((m) => Number(m[1]));
    expect(total).toBeGreaterThan(0);
    expect(steps).toEqual(Array.from({ length: total }, (_, i) => i + 1));
    expect(text).toMatch(/^\. "\$HERE\/progress\.sh"$/m);
    expect(text).toMatch(/^progress_end$/m);
  });
});
