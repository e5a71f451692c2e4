// What `tern factory init` shows while it works: each build phase as a counted
// step (plain lines on a non-TTY stream, a live line on a terminal), and a
// failed lookup through runCli with a progress stream. No VM is started: the
// phases are reported by hand, and the failing init fails before a boot.
import fs from 'node:fs';
import { join } from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { initProgress, LOOKUP_LABEL, templatePhaseSteps } from '../../../src/cli/factory-progress';
import { bufferIo } from '../../../src/cli/io';
import { runCli } from '../../../src/cli/run';
import { CLEAR_LINE } from '../../../src/common/progress';
import { TEMPLATE_BUILD_PHASES } from '../../../src/shim/templates/factory';
import { recordingStream } from '../common/recording-stream';

describe('template build phases', () => {
  it('are one plain line each, counted in order, on a non-TTY stream', () => {
    const s = recordingStream();
    const p = initProgress(s, {});
    const onPhase = templatePhaseSteps(p);
    p.begin(LOOKUP_LABEL);
    for (const phase of TEMPLATE_BUILD_PHASES) onPhase(phase);
    p.end();
    expect(s.writes.map((w) => w.replace(/ \d+\.\ds\n$/, ''))).toEqual([
      'tern factory init: looking up the template',
      'tern factory init: [1/4] booting the template VM',
      'tern factory init: [2/4] waiting for the guest agent',
      'tern factory init: [3/4] saving the VM state',
      'tern factory init: [4/4] stopping the template VM',
    ]);
  });

  it('are a live line with a counter on a terminal, cleared at the end', () => {
    const s = recordingStream({ columns: 120 });
    const p = initProgress(s, {});
    templatePhaseSteps(p)('boot');
    expect(s.writes[0]).toMatch(/^\r\x1b\[2Ktern factory init: \[1\/4\] booting the template VM \d+\.\ds$/);
    p.end();
    expect(s.writes.at(-1)).toBe(CLEAR_LINE);
  });
});

describe('tern factory init with a progress stream', () => {
  let tmp: string;
  beforeEach(() => {
    tmp = fs.mkdtempSync('/dev/shm/tern-unit-factory-progress-');
  });
  afterEach(() => fs.rmSync(tmp, { recursive: true, force: true }));

  it('shows the failed lookup on the progress stream and the error on stderr', async () => {
    const qemu = join(tmp, 'fake-qemu');
    fs.writeFileSync(qemu, '#!/bin/sh\nexit 1\n', { mode: 0o755 });
    const cfg = join(tmp, 'config.toml');
    fs.writeFileSync(
      cfg,
      `[runtime]\nlog_level = "error"\n\n[hypervisor]\nbinary = ${JSON.stringify(qemu)}\nkernel = ${JSON.stringify(join(tmp, 'no-vmlinux'))}\n\n` +
        `[factory]\ntemplate_dir = ${JSON.stringify(join(tmp, 'templates'))}\n`,
    );
    const s = recordingStream();
    const io = { ...bufferIo(), progress: s };
    const code = await runCli(['factory', 'init', '-c', cfg], io);
    expect(code).toBe(1);
    expect(s.writes).toHaveLength(1);
    expect(s.writes[0]).toMatch(/^tern factory init: looking up the template failed after \d+\.\ds\n$/);
  });
});
