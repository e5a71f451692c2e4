// Typed errors with stable codes. Domain code throws these; the ttrpc layer
// turns them into a status in exactly one place (toStatus in src/ttrpc/status.ts
// works from `code`, never from message text).

export const ErrorCode = {
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
  NotImplemented: 12,
  Internal: 13,
  Unavailable: 14,
} as const;
export type ErrorCodeName = keyof typeof ErrorCode;

export class TernError extends Error {
  readonly code: ErrorCodeName;
  constructor(code: ErrorCodeName, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.code = code;
    this.name = `TernError(${code})`;
  }
  get grpcCode(): number {
    return ErrorCode[this.code];
  }
}

export const notFound = (what: string) => new TernError('NotFound', `${what}: not found`);
export const alreadyExists = (what: string) => new TernError('AlreadyExists', `${what}: already exists`);
export const invalidArgument = (msg: string) => new TernError('InvalidArgument', msg);
export const failedPrecondition = (msg: string) => new TernError('FailedPrecondition', msg);
export const notImplemented = (what: string) => new TernError('NotImplemented', `${what}: not implemented by tern`);
export const deadlineExceeded = (msg: string) => new TernError('DeadlineExceeded', msg);
export const unavailable = (msg: string) => new TernError('Unavailable', msg);
export const internal = (msg: string, cause?: unknown) => new TernError('Internal', msg, { cause });

/** Status code for any thrown value: TernError keeps its code, everything else is Unknown. */
export function codeOf(err: unknown): number {
  if (err instanceof TernError) return err.grpcCode;
  if (typeof err === 'object' && err !== null && typeof (err as { grpcCode?: unknown }).grpcCode === 'number') {
    return (err as { grpcCode: number }).grpcCode;
  }
  return ErrorCode.Unknown;
}

export function messageOf(err: unknown): string {
  return err instanceof Error ? err.message : String(err);
}

/** Build a TernError from a status received over the wire. */
export function fromStatus(code: number, message: string): TernError {
  const name = (Object.keys(ErrorCode) as ErrorCodeName[]).find((k) => ErrorCode[k] === code) ?? 'Unknown';
  return new TernError(name, message);
}
