// Forcing a garbage collection for the memory check, where the runtime allows it.
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** global.gc, or else one obtained by turning --expose-gc on at run time; undefined if neither works. */
export function findGc(): (() => void) | undefined {
  const existing = (globalThis as { gc?: () => void }).gc;
  if (existing) return existing;
  try {
    setFlagsFromString('--expose-gc');
    const gc: unknown = runInNewContext('gc');
    return typeof gc === 'function' ? (gc as () => void) : undefined;
  } catch {
    return undefined;
  }
}
