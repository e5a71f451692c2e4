// The loader for corpus/*.hex: hex bytes (with `unit*count` repeats and #
// comments) and `#! server: codes` lines declaring each server's answers.
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

export interface CorpusEntry {
  name: string;
  bytes: Buffer;
  /** Declared answer codes per server, in frame order (0 = ok); [] = no answer, closed when the client ends. */
  declared: Map<string, number[]>;
}

const CORPUS_DIR = fileURLToPath(new URL('../corpus', import.meta.url));

function parseRepeat(token: string, what: string): { unit: string; count: number } {
  const m = /^([^*]+)(?:\*(\d+))?$/.exec(token);
  if (!m) throw new Error(`corpus ${what}: bad token ${token}`);
  return { unit: m[1]!, count: m[2] === undefined ? 1 : Number(m[2]) };
}

function parseCorpus(name: string, text: string): CorpusEntry {
  const parts: Buffer[] = [];
  const declared = new Map<string, number[]>();
  for (const line of text.split('\n')) {
    const directive = /^#!\s*(\w+):(.*)$/.exec(line);
    if (directive) {
      const codes: number[] = [];
      for (const token of directive[2]!.trim().split(/\s+/)) {
        if (token === 'none') continue;
        const { unit, count } = parseRepeat(token, name);
        const code = unit === 'ok' ? 0 : Number(unit);
        if (!Number.isInteger(code)) throw new Error(`corpus ${name}: bad answer ${token}`);
        for (let i = 0; i < count; i++) codes.push(code);
      }
      declared.set(directive[1]!, codes);
      continue;
    }
    for (const token of line.replace(/#.*$/, '').trim().split(/\s+/).filter(Boolean)) {
      const { unit, count } = parseRepeat(token, name);
      if (!/^([0-9a-f]{2})+$/i.test(unit)) throw new Error(`corpus ${name}: bad hex ${unit}`);
      const pattern = Buffer.from(unit, 'hex');
      parts.push(count === 1 ? pattern : Buffer.alloc(pattern.length * count).fill(pattern));
    }
  }
  return { name, bytes: Buffer.concat(parts), declared };
}

export function loadCorpus(): CorpusEntry[] {
  return readdirSync(CORPUS_DIR)
    .filter((f) => f.endsWith('.hex'))
    .sort()
    .map((f) => parseCorpus(f, readFileSync(join(CORPUS_DIR, f), 'utf8')));
}
