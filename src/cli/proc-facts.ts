// Small readers of /proc for the sandbox listing, and the pure parsers behind
// them (PSS from smaps_rollup, vCPUs and memory from a QEMU command line).
import { readFileSync } from 'node:fs';

/** Pss of a smaps_rollup text, in KiB. */
export function pssFromRollup(text: string): number | null {
  const m = /^Pss:\s+(\d+)\s*kB/m.exec(text);
  return m ? Number(m[1]) : null;
}

/** Host PSS of a process in KiB, or null when it is gone or unreadable. */
export function processPssKiB(pid: number): number | null {
  try {
    return pssFromRollup(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8'));
  } catch {
    return null;
  }
}

export function processArgv(pid: number): string[] | null {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8')
      .split('\0')
      .filter((a) => a !== '');
  } catch {
    return null;
  }
}

/** QEMU memory size ("512M", "1G", "size=2G,slots=2", "512") in MiB. */
export function parseQemuMemory(value: string): number | null {
  const first = value.split(',')[0]!;
  const m = /^(?:size=)?(\d+(?:\.\d+)?)([KMGT]?)[bB]?$/i.exec(first);
  if (!m) return null;
  const n = Number(m[1]);
  const unit = (m[2] || 'M').toUpperCase();
  const factor: Record<string, number> = { K: 1 / 1024, M: 1, G: 1024, T: 1024 * 1024 };
  return Math.round(n * factor[unit]!);
}

/** QEMU -smp value ("2", "cpus=2,sockets=1", "2,maxcpus=4") -> vCPUs. */
export function parseQemuSmp(value: string): number | null {
  for (const part of value.split(',')) {
    const m = /^(?:cpus=)?(\d+)$/.exec(part);
    if (m) return Number(m[1]);
  }
  return null;
}

/** vCPUs and memory from a QEMU argv (the last -smp / -m wins, as in QEMU). */
export function resourcesFromArgv(argv: readonly string[]): { vcpus: number | null; memoryMiB: number | null } {
  let vcpus: number | null = null;
  let memoryMiB: number | null = null;
  for (let i = 0; i < argv.length - 1; i++) {
    if (argv[i] === '-smp') vcpus = parseQemuSmp(argv[i + 1]!) ?? vcpus;
    else if (argv[i] === '-m') memoryMiB = parseQemuMemory(argv[i + 1]!) ?? memoryMiB;
  }
  return { vcpus, memoryMiB };
}

/** The last n lines of a text (a trailing newline does not count as a line). */
export function tailLines(text: string, n: number): string[] {
  const lines = text.split('\n');
  if (lines.length > 0 && lines[lines.length - 1] === '') lines.pop();
  return lines.slice(Math.max(0, lines.length - n));
}
