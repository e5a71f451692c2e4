// google.protobuf.Timestamp helpers. An unset time is Go's zero time
// (0001-01-01), which containerd treats as "not exited".
export interface Timestamp {
  seconds: number;
  nanos: number;
}

export const ZERO_TIME: Timestamp = { seconds: -62135596800, nanos: 0 };

export function fromNanos(ns: bigint): Timestamp {
  const seconds = ns / 1_000_000_000n;
  return { seconds: Number(seconds), nanos: Number(ns - seconds * 1_000_000_000n) };
}

export function fromDate(d: Date): Timestamp {
  const ms = d.getTime();
  return { seconds: Math.floor(ms / 1000), nanos: (ms % 1000) * 1_000_000 };
}

export function nowNanos(): bigint {
  return BigInt(Date.now()) * 1_000_000n;
}
