// Progress of a long operation (a template build, a benchmark), written to one
// stream, stderr in practice. On a terminal (and CI unset) it is one live
// status line, redrawn in place (\r and clear-line) at most once per redraw
// interval: step name, optional i/N counter and detail, seconds in the step.
// Elsewhere (a pipe, a CI log) there are no live updates: one plain line per
// finished step, or nothing at all in mode 'off'. end() leaves a clean line.
// print() writes other lines (logs, errors) to the same stream in every mode.

/** What progress writes to: process.stderr, or any stream with the same fields. */
export interface ProgressStream {
  write(text: string): unknown;
  /** True on a terminal (tty.WriteStream); absent or false elsewhere. */
  isTTY?: boolean;
  /** The terminal's width; the live line is cut to fit it. */
  columns?: number;
}

/** live: the redrawn line; lines: a plain line per finished step; off: nothing. */
export type ProgressMode = 'live' | 'lines' | 'off';

export interface ProgressCount {
  current: number;
  total: number;
}

export interface ProgressOptions {
  stream?: ProgressStream;
  /** Forces a mode; by default progressMode(stream, env). */
  mode?: ProgressMode;
  env?: Readonly<Record<string, string | undefined>>;
  /** Put before every line, e.g. "tern factory init: ". */
  prefix?: string;
  /** Shortest time between two redraws of the live line (default 100 ms). */
  redrawMs?: number;
  /** Milliseconds on a monotonic clock (default performance.now). */
  now?: () => number;
}

/** Erases the cursor's line and returns to its start. */
export const CLEAR_LINE = '\r\x1b[2K';

const DEFAULT_REDRAW_MS = 100;

/** CI counts as set when it is non-empty and not "false" or "0". */
export function ciSet(env: Readonly<Record<string, string | undefined>>): boolean {
  const v = env.CI;
  return v !== undefined && v !== '' && v !== 'false' && v !== '0';
}

/** live on a terminal that can clear a line, outside CI; lines otherwise; off without a stream. */
export function progressMode(stream: ProgressStream | undefined, env: Readonly<Record<string, string | undefined>> = process.env): ProgressMode {
  if (stream === undefined) return 'off';
  if (stream.isTTY === true && !ciSet(env) && env.TERM !== 'dumb') return 'live';
  return 'lines';
}

const seconds = (ms: number) => `${(ms / 1000).toFixed(1)}s`;
const countText = (step: Step) => (step.count ? `[${step.count.current}/${step.count.total}] ` : '');

interface Step {
  name: string;
  count?: ProgressCount;
  detail?: string;
  startMs: number;
}

export class Progress {
  readonly mode: ProgressMode;
  private readonly stream?: ProgressStream;
  private readonly prefix: string;
  private readonly redrawMs: number;
  private readonly now: () => number;
  private step?: Step;
  private timer?: NodeJS.Timeout;
  /** What the live line shows now ('' when it is clear). */
  private shown = '';
  private lastDrawMs = -Infinity;
  private ended = false;

  constructor(opts: ProgressOptions = {}) {
    this.stream = opts.stream;
    this.mode = opts.stream === undefined ? 'off' : (opts.mode ?? progressMode(opts.stream, opts.env ?? process.env));
    this.prefix = opts.prefix ?? '';
    this.redrawMs = opts.redrawMs ?? DEFAULT_REDRAW_MS;
    this.now = opts.now ?? (() => performance.now());
  }

  /** Begins a step; a step still open finishes first (as done). */
  begin(name: string, count?: ProgressCount, detail?: string): void {
    if (this.ended) return;
    // The next status overwrites the live line: no blank flash between steps.
    if (this.step) this.finish('done', false);
    this.step = { name, count, detail, startMs: this.now() };
    this.redraw();
  }

  /** Changes the open step's counter or detail, those given (shown live only). */
  update(change: { count?: ProgressCount; detail?: string }): void {
    if (this.ended || !this.step) return;
    if ('count' in change) this.step.count = change.count;
    if ('detail' in change) this.step.detail = change.detail;
    this.redraw();
  }

  /** Finishes the open step: in lines mode, "[i/N] <name> <seconds>". */
  done(): void {
    if (!this.ended && this.step) this.finish('done');
  }

  /** Finishes the open step as failed: in lines mode, "[i/N] <name> failed after <seconds>". */
  fail(): void {
    if (!this.ended && this.step) this.finish('failed');
  }

  /** Writes text (whole lines) to the stream, in any mode, without tearing the live line. */
  print(text: string): void {
    if (this.stream === undefined) return;
    if (this.shown !== '') {
      this.stream.write(CLEAR_LINE);
      this.shown = '';
    }
    this.stream.write(text);
    // The status comes back on the next frame, within redrawMs.
  }

  /** Finishes the open step (as done), stops redrawing and leaves a clean line. Idempotent. */
  end(): void {
    if (this.ended) return;
    if (this.step) this.finish('done');
    this.clear();
    this.ended = true;
    this.stopTimer();
  }

  private finish(how: 'done' | 'failed', clearLive = true): void {
    const step = this.step!;
    this.step = undefined;
    if (this.mode === 'live') {
      if (clearLive) {
        this.clear();
        this.stopTimer();
      }
    } else if (this.mode === 'lines') {
      const took = seconds(this.now() - step.startMs);
      this.stream!.write(`${this.prefix}${countText(step)}${step.name} ${how === 'done' ? took : `failed after ${took}`}\n`);
    }
  }

  /** The live line for the open step, cut to the terminal's width. */
  private statusLine(step: Step): string {
    const count = countText(step);
    const detail = step.detail ? ` ${step.detail}` : '';
    const line = `${this.prefix}${count}${step.name}${detail} ${seconds(this.now() - step.startMs)}`;
    const width = this.stream?.columns;
    // One column short: a line that fills the width wraps on some terminals, and \r then returns to the wrong row.
    return width !== undefined && width > 1 && line.length > width - 1 ? line.slice(0, width - 1) : line;
  }

  /**
   * Draws a frame now if the last one is redrawMs old; otherwise the frame
   * already scheduled will show the change. Frames are thus at least redrawMs
   * apart, whether a change or the clock asks for them.
   */
  private redraw(): void {
    if (this.mode !== 'live' || this.ended || !this.step) return;
    if (this.now() - this.lastDrawMs >= this.redrawMs) this.frame();
    else if (this.timer === undefined) this.schedule();
  }

  /** Writes the status line if it changed, and schedules the next frame (the seconds move on). */
  private frame(): void {
    this.stopTimer();
    if (this.mode !== 'live' || this.ended || !this.step) return;
    this.lastDrawMs = this.now();
    const line = this.statusLine(this.step);
    if (line !== this.shown) {
      this.stream!.write(CLEAR_LINE + line);
      this.shown = line;
    }
    this.schedule();
  }

  private schedule(): void {
    this.timer = setTimeout(
      () => {
        this.timer = undefined;
        this.frame();
      },
      Math.max(0, this.lastDrawMs + this.redrawMs - this.now()),
    );
    this.timer.unref();
  }

  private clear(): void {
    if (this.shown === '') return;
    this.stream!.write(CLEAR_LINE);
    this.shown = '';
  }

  private stopTimer(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
  }
}
