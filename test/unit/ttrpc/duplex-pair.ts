// Test helper: two in-memory Duplex streams wired back to back, so what one
// writes the other reads; ending or destroying one ends the other's readable
// side (like a socket whose peer went away).
import { Duplex } from 'node:stream';

export function duplexPair(): [Duplex, Duplex] {
  const sides: Duplex[] = [];
  const eof = [false, false];
  const endPeer = (i: number) => {
    const peer = 1 - i;
    if (!eof[peer]) {
      eof[peer] = true;
      sides[peer]!.push(null);
    }
  };
  for (const i of [0, 1]) {
    sides.push(
      new Duplex({
        read() {},
        write(chunk: Buffer, _enc, cb) {
          const peer = sides[1 - i]!;
          if (!eof[1 - i] && !peer.destroyed) peer.push(Buffer.from(chunk));
          cb();
        },
        final(cb) {
          endPeer(i);
          cb();
        },
        destroy(err, cb) {
          endPeer(i);
          cb(err);
        },
      }),
    );
  }
  return [sides[0]!, sides[1]!];
}
