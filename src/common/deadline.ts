// A deadline on any promise: the wait ends with DeadlineExceeded naming what
// did not happen in time, and the timer is always cleared. What was waited
// for is not cancelled by this (the caller stops it in onTimeout if needed).
import { TernError } from './errors';

/**
 * Resolves or rejects as `p` does, or rejects with
 * TernError('DeadlineExceeded', `${what} within ${ms} ms`) if `p` has not
 * settled by then; `onTimeout` runs first, to stop what was left behind.
 * `what` reads as the failure: "the warm-up container did not finish".
 */
export function withDeadline<T>(p: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  return new Promise<T>((resolve, reject) => {
    const timer = setTimeout(() => {
      try {
        onTimeout?.();
      } finally {
        reject(new TernError('DeadlineExceeded', `${what} within ${ms} ms`));
      }
    }, ms);
    p.then(
      (v) => {
        clearTimeout(timer);
        resolve(v);
      },
      (err: unknown) => {
        clearTimeout(timer);
        reject(err);
      },
    );
  });
}
