// The runtimes the ctr benchmarks compare and how ctr is told to use each:
// tern by either start path (a config file per path), runc, and gVisor (runsc
// behind the runc shim, through a wrapper: Debian ships no runsc shim).
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export type RuntimeName = 'tern-cold' | 'tern-template' | 'tern-pool' | 'runc' | 'gvisor';
type TernPath = 'tern-cold' | 'tern-template' | 'tern-pool';
export const TERN_PATHS: RuntimeName[] = ['tern-cold', 'tern-template', 'tern-pool'];

/** Files the runs need: the runsc wrapper and one tern config per start path. */
export interface RuntimeFiles {
  wrapper: string;
  ternConfig: Record<TernPath, string>;
}

/**
 * Writes the runsc wrapper and the tern configs into dir (the private
 * containerd's). The tern-pool config is also the one its `tern pool serve`
 * reads: poolSize ready VMs, socket and directory inside dir.
 */
export function writeRuntimeFiles(dir: string, poolSize = 2, extra = extraTernConfig()): RuntimeFiles {
  const files: RuntimeFiles = {
    wrapper: join(dir, 'runsc-no-network'),
    ternConfig: {
      'tern-cold': join(dir, 'tern-cold.toml'),
      'tern-template': join(dir, 'tern-template.toml'),
      'tern-pool': join(dir, 'tern-pool.toml'),
    },
  };
  writeFileSync(files.wrapper, '#!/bin/sh\n# runsc without a network stack of its own: ctr sets up no network\nexec runsc --network=none "$@"\n');
  chmodSync(files.wrapper, 0o755);
  // The two tern start paths: every VM booted, or cloned from the (default) template store.
  writeFileSync(files.ternConfig['tern-cold'], `[factory]\ntemplate = false\n${extra}`);
  writeFileSync(files.ternConfig['tern-template'], `[factory]\ntemplate = true\n${extra}`);
  writeFileSync(
    files.ternConfig['tern-pool'],
    `[factory]\ntemplate = true\n[pool]\nsize = ${poolSize}\nsocket = ${JSON.stringify(join(dir, 'pool.sock'))}\ndir = ${JSON.stringify(join(dir, 'pool'))}\n${extra}`,
  );
  return files;
}

/**
 * More of the tern config, from BENCH_TERN_CONFIG (TOML sections other than
 * [factory] and [pool], e.g. "[runtime]\nlayer_slots = 0"): every tern path
 * of the run gets it, so one tree can compare a setting against its default.
 */
export function extraTernConfig(): string {
  const extra = process.env.BENCH_TERN_CONFIG?.replace(/\\n/g, '\n') ?? '';
  if (/^\s*\[(factory|pool)\]/m.test(extra)) throw new Error("BENCH_TERN_CONFIG: [factory] and [pool] are the benchmark's own; set other sections");
  return extra && !extra.endsWith('\n') ? `${extra}\n` : extra;
}

/** The `ctr run` options selecting a runtime. */
export function runtimeArgs(runtime: RuntimeName, files: RuntimeFiles): string[] {
  switch (runtime) {
    case 'tern-cold':
    case 'tern-template':
    case 'tern-pool':
      return ['--runtime', 'io.containerd.tern.v2', '--runtime-config-path', files.ternConfig[runtime]];
    case 'runc':
      return ['--runtime', 'io.containerd.runc.v2'];
    case 'gvisor':
      return ['--runtime', 'io.containerd.runc.v2', '--runc-binary', files.wrapper];
  }
}
