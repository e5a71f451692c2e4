// Status codes (the gRPC set ttrpc uses), the error type a client raises for
// a non-OK answer, and the one function that turns any thrown value into a
// wire status: from a numeric `grpcCode`, else a numeric `code` in 1..16,
// else Unknown. Message text is never inspected.

export const Code = {
  OK: 0,
  Canceled: 1,
  Unknown: 2,
  InvalidArgument: 3,
  DeadlineExceeded: 4,
  NotFound: 5,
  AlreadyExists: 6,
  PermissionDenied: 7,
  ResourceExhausted: 8,
  FailedPrecondition: 9,
  Aborted: 10,
  OutOfRange: 11,
  Unimplemented: 12,
  Internal: 13,
  Unavailable: 14,
  DataLoss: 15,
  Unauthenticated: 16,
} as const;
export type CodeName = keyof typeof Code;

export function codeName(code: number): string {
  const name = (Object.keys(Code) as CodeName[]).find((k) => Code[k] === code);
  return name ?? `Code(${code})`;
}

export interface Status {
  code: number;
  message: string;
}

export class TtrpcError extends Error {
  readonly code: number;
  constructor(code: number, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = `TtrpcError(${codeName(code)})`;
  }
  /** Same as `code`; lets code that reads `grpcCode` treat this like other typed errors. */
  get grpcCode(): number {
    return this.code;
  }
}

function isStatusCode(v: unknown): v is number {
  return typeof v === 'number' && Number.isInteger(v) && v >= 1 && v <= 16;
}

export function statusFromError(err: unknown): Status {
  const message = err instanceof Error ? err.message : String(err);
  if (typeof err === 'object' && err !== null) {
    const { grpcCode, code } = err as { grpcCode?: unknown; code?: unknown };
    if (typeof grpcCode === 'number') return { code: isStatusCode(grpcCode) ? grpcCode : Code.Unknown, message };
    if (isStatusCode(code)) return { code, message };
  }
  return { code: Code.Unknown, message };
}

export function oversizeMessage(length: number, max: number): string {
  return `message length ${length} exceed maximum message size of ${max}`;
}
