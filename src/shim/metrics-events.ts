// The durable record of sandbox starts, for `tern metrics`: one JSON line per
// event in <stateDir>/metrics/events.jsonl, appended by the shims (many
// processes, one file). Each line goes out in one write(2) on an O_APPEND
// descriptor, well under 4 KiB, so concurrent shims never interleave bytes;
// no fsync (it is a statistic, not a journal). A writer that finds the file
// past its bound renames it to events.jsonl.1 (replacing the previous one),
// so at most about twice the bound is kept; readers read both.
//
// Events: `start` (the sandbox's first container process runs: its start
// path and phase times, ms since the sandbox's boot began), `fallback` (a
// faster start path was refused or failed, and why), `failure` (the start
// failed, in which phase and with which error code). Reasons are small
// closed sets (label values); the free text goes in `detail`.
import { closeSync, fstatSync, mkdirSync, openSync, renameSync, statSync, writeSync, constants } from 'node:fs';
import { dirname, join } from 'node:path';

export const EVENTS_FORMAT_VERSION = 1;
/** A line is dropped rather than written when longer than this (so writes stay atomic and lines short). */
export const MAX_EVENT_LINE_BYTES = 3_500;
const MAX_DETAIL_CHARS = 400;

export type StartPathName = 'pool' | 'template' | 'cold';
export const START_PATHS: readonly StartPathName[] = ['pool', 'template', 'cold'];

/** What a start went through, in order: the VM answers, the first container exists, its process runs. */
export type StartPhase = 'vm_ready' | 'container_created' | 'process_started';
export const START_PHASES: readonly StartPhase[] = ['vm_ready', 'container_created', 'process_started'];

/** Why a faster path was not taken: the pool said no or was unreachable or its VM could not be adopted; no template could be had, or its clone's restore was refused or the clone did not come up. */
export const FALLBACK_REASONS = {
  pool: ['refused', 'unreachable', 'adopt_failed'],
  template: ['unavailable', 'restore_refused', 'clone_failed'],
} as const;
export type FallbackFrom = keyof typeof FALLBACK_REASONS;
export type FallbackReasonOf<F extends FallbackFrom> = (typeof FALLBACK_REASONS)[F][number];
export type FallbackReason = FallbackReasonOf<FallbackFrom>;

interface EventBase {
  v: typeof EVENTS_FORMAT_VERSION;
  /** ISO time the event was recorded. */
  at: string;
  namespace: string;
  sandbox: string;
}

export interface StartFinished extends EventBase {
  kind: 'start';
  path: StartPathName;
  /** Milliseconds since the sandbox's boot began, per phase. */
  phasesMs: Record<StartPhase, number>;
}

export interface StartFallback extends EventBase {
  kind: 'fallback';
  from: FallbackFrom;
  reason: FallbackReason;
  detail: string;
}

export interface StartFailure extends EventBase {
  kind: 'failure';
  phase: StartPhase;
  /** The error's code (TernError codes; Unknown for anything else). */
  reason: string;
  detail: string;
}

export type StartEvent = StartFinished | StartFallback | StartFailure;

export function eventsPath(stateDir: string): string {
  return join(stateDir, 'metrics', 'events.jsonl');
}

export function rotatedPath(path: string): string {
  return `${path}.1`;
}

function shortText(s: string): string {
  return s.length > MAX_DETAIL_CHARS ? `${s.slice(0, MAX_DETAIL_CHARS - 3)}...` : s;
}

/** The line an event is written as (with its newline). */
export function formatEvent(e: StartEvent): string {
  const v = 'detail' in e ? { ...e, detail: shortText(e.detail) } : e;
  return `${JSON.stringify(v)}\n`;
}

/**
 * Appends events to the file, one write each; past maxBytes the writer
 * rotates it. Never throws: a failure is passed to onError (the shim logs
 * it at debug) and the event is lost.
 */
export class StartEventLog {
  private dirMade = false;

  constructor(
    readonly path: string,
    private readonly maxBytes: number,
    private readonly onError: (err: Error) => void = () => undefined,
  ) {}

  append(e: StartEvent): void {
    try {
      const line = Buffer.from(formatEvent(e));
      if (line.length > MAX_EVENT_LINE_BYTES) throw new Error(`event line of ${line.length} bytes not written (limit ${MAX_EVENT_LINE_BYTES})`);
      if (!this.dirMade) {
        mkdirSync(dirname(this.path), { recursive: true, mode: 0o755 });
        this.dirMade = true;
      }
      const fd = openSync(this.path, constants.O_WRONLY | constants.O_APPEND | constants.O_CREAT, 0o644);
      try {
        const n = writeSync(fd, line);
        if (n !== line.length) throw new Error(`short write to ${this.path}: ${n} of ${line.length} bytes`);
        if (this.maxBytes > 0) rotateIfFull(this.path, fd, this.maxBytes);
      } finally {
        closeSync(fd);
      }
    } catch (err) {
      this.onError(err as Error);
    }
  }
}

/**
 * Renames the file at `path` to .1 when fd (open on it) is past maxBytes,
 * unless another writer already did (the path is another file then).
 * Whether it renamed.
 */
export function rotateIfFull(path: string, fd: number, maxBytes: number): boolean {
  const mine = fstatSync(fd);
  if (mine.size <= maxBytes) return false;
  const now = statSync(path, { throwIfNoEntry: false });
  if (!now || now.ino !== mine.ino || now.dev !== mine.dev) return false;
  renameSync(path, rotatedPath(path));
  return true;
}

const isObj = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStr = (v: unknown, max = 256): v is string => typeof v === 'string' && v.length > 0 && v.length <= max;
const isMs = (v: unknown): v is number => typeof v === 'number' && Number.isFinite(v) && v >= 0;

/** One line of the file as an event, or undefined for anything malformed (another version, garbage, a torn line). */
export function parseEvent(line: string): StartEvent | undefined {
  let v: unknown;
  try {
    v = JSON.parse(line);
  } catch {
    return undefined;
  }
  if (!isObj(v) || v.v !== EVENTS_FORMAT_VERSION || !isStr(v.at, 64) || !isStr(v.namespace) || !isStr(v.sandbox)) return undefined;
  const base = { v: EVENTS_FORMAT_VERSION, at: v.at, namespace: v.namespace, sandbox: v.sandbox } as const;
  const detail = typeof v.detail === 'string' ? v.detail : '';
  switch (v.kind) {
    case 'start': {
      const p = v.phasesMs;
      if (!START_PATHS.includes(v.path as StartPathName) || !isObj(p)) return undefined;
      if (!START_PHASES.every((ph) => isMs(p[ph]))) return undefined;
      const phasesMs = Object.fromEntries(START_PHASES.map((ph) => [ph, p[ph] as number])) as Record<StartPhase, number>;
      return { ...base, kind: 'start', path: v.path as StartPathName, phasesMs };
    }
    case 'fallback': {
      const from = v.from;
      if (from !== 'pool' && from !== 'template') return undefined;
      if (!(FALLBACK_REASONS[from] as readonly string[]).includes(v.reason as string)) return undefined;
      return { ...base, kind: 'fallback', from, reason: v.reason as FallbackReason, detail };
    }
    case 'failure':
      if (!START_PHASES.includes(v.phase as StartPhase) || !isStr(v.reason, 64) || !/^[A-Za-z]+$/.test(v.reason)) return undefined;
      return { ...base, kind: 'failure', phase: v.phase as StartPhase, reason: v.reason, detail };
    default:
      return undefined;
  }
}
