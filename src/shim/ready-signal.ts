// The daemon's word to whoever launched it (the native launcher, or `start`
// in Node), on its fd 3: "ok <address>" once it serves, or "err <message>".
// Written once, then fd 3 is closed: the launcher reads to end-of-file.
import { closeSync, writeSync } from 'node:fs';

export const READY_FD = 3;

let spoken = false;

/** Says `word` once; later calls do nothing (fd 3 is closed by then, and its number may belong to another file). */
export function signalReady(word: `ok ${string}` | `err ${string}`): void {
  if (spoken) return;
  spoken = true;
  try {
    writeSync(READY_FD, `${word}\n`);
    closeSync(READY_FD);
  } catch {
    /* not launched with a pipe on fd 3 (e.g. run by hand) */
  }
}
