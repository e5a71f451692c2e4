// Pure helpers for the QMP wire format: QMP sends one JSON object per line
// (CRLF-terminated); socket chunks may split or join lines arbitrarily. No I/O here.

export interface LineSplit {
  /** Complete lines, without their line terminators; empty lines are dropped. */
  lines: string[];
  /** Incomplete tail to prepend to the next chunk. */
  rest: string;
}

/** Appends `chunk` to the carried-over `rest` and returns the complete lines. */
export function splitLines(rest: string, chunk: string): LineSplit {
  const text = rest + chunk;
  const parts = text.split('\n');
  const tail = parts.pop() ?? '';
  const lines: string[] = [];
  for (const part of parts) {
    const line = part.endsWith('\r') ? part.slice(0, -1) : part;
    if (line.trim() !== '') lines.push(line);
  }
  return { lines, rest: tail };
}

export type QmpMessage =
  | { kind: 'greeting'; version: unknown; capabilities: unknown }
  | { kind: 'return'; id: unknown; value: unknown }
  | { kind: 'error'; id: unknown; errorClass: string; desc: string }
  | { kind: 'event'; name: string; data: unknown; timestamp: { seconds: number; microseconds: number } | undefined }
  | { kind: 'unknown'; raw: unknown };

function isRecord(v: unknown): v is Record<string, unknown> {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

/** Classifies one QMP line. Throws SyntaxError on invalid JSON. */
export function parseQmpMessage(line: string): QmpMessage {
  const obj: unknown = JSON.parse(line);
  if (!isRecord(obj)) return { kind: 'unknown', raw: obj };
  if (isRecord(obj.QMP)) {
    return { kind: 'greeting', version: obj.QMP.version, capabilities: obj.QMP.capabilities };
  }
  if ('return' in obj) return { kind: 'return', id: obj.id, value: obj.return };
  if (isRecord(obj.error)) {
    const errorClass = typeof obj.error.class === 'string' ? obj.error.class : 'GenericError';
    const desc = typeof obj.error.desc === 'string' ? obj.error.desc : '';
    return { kind: 'error', id: obj.id, errorClass, desc };
  }
  if (typeof obj.event === 'string') {
    const ts = isRecord(obj.timestamp) ? obj.timestamp : undefined;
    const timestamp =
      ts && typeof ts.seconds === 'number' && typeof ts.microseconds === 'number' ? { seconds: ts.seconds, microseconds: ts.microseconds } : undefined;
    return { kind: 'event', name: obj.event, data: obj.data, timestamp };
  }
  return { kind: 'unknown', raw: obj };
}

/** Serializes one QMP command line. */
export function encodeCommand(command: string, args: Record<string, unknown> | undefined, id: number): string {
  const msg: Record<string, unknown> = { execute: command };
  if (args !== undefined) msg.arguments = args;
  msg.id = id;
  return `${JSON.stringify(msg)}\n`;
}
