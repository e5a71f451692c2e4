// The seeded PRNG behind every fuzz input, and the seeds the tests run with
// (TTRPC_FUZZ_SEED adds one more, decimal or 0x hex).

function parseSeed(s: string | undefined): number[] {
  if (!s) return [];
  const n = Number(s);
  return Number.isInteger(n) ? [n >>> 0] : [];
}
export const SEEDS = [0x5eed0001, 0x5eed0002, 0x00c0ffee, 0x0decaf00, ...parseSeed(process.env.TTRPC_FUZZ_SEED)];
export const hexSeed = (seed: number) => `0x${seed.toString(16).padStart(8, '0')}`;

/** mulberry32: tiny, fast, good enough to pick fuzz inputs; same seed, same sequence. */
export class Rng {
  private state: number;
  constructor(readonly seed: number) {
    this.state = seed >>> 0;
  }
  next(): number {
    let t = (this.state = (this.state + 0x6d2b79f5) >>> 0);
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  /** Integer in [0, n). */
  int(n: number): number {
    return Math.floor(this.next() * n);
  }
  /** Integer in [lo, hi]. */
  range(lo: number, hi: number): number {
    return lo + this.int(hi - lo + 1);
  }
  u32(): number {
    return Math.floor(this.next() * 4294967296) >>> 0;
  }
  chance(p: number): boolean {
    return this.next() < p;
  }
  pick<T>(items: readonly T[]): T {
    return items[this.int(items.length)]!;
  }
  bytes(n: number): Buffer {
    const b = Buffer.allocUnsafe(n);
    for (let i = 0; i < n; i++) b[i] = this.int(256);
    return b;
  }
  string(maxLength: number): string {
    const alphabet = ['a', 'b', 'z', '0', '9', '-', '_', '.', '/', ' ', 'é', '☃', '\u0000', '😀', 'A', 'Z'];
    let s = '';
    for (let n = this.int(maxLength + 1); n > 0; n--) s += this.pick(alphabet);
    return s;
  }
}
