// A Writable that records what is written, optionally looking like a
// terminal (isTTY, columns): the stream the progress tests write to.
import { Writable } from 'node:stream';

export type RecordingStream = Writable & { writes: string[]; isTTY?: boolean; columns?: number };

export function recordingStream(tty?: { columns: number }): RecordingStream {
  const writes: string[] = [];
  const s = new Writable({
    write(chunk: Buffer, _enc, done) {
      writes.push(chunk.toString());
      done();
    },
  }) as RecordingStream;
  s.writes = writes;
  if (tty) {
    s.isTTY = true;
    s.columns = tty.columns;
  }
  return s;
}
