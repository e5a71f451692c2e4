// Typed errors with stable codes. Domain code throws these; the ttrpc layer
// turns them into a status in exactly one place (statusFromError in src/ttrpc/status.ts
// works from `code`, never from message text).

import { Code } from '../ttrpc/status';

/** Wire codes of the errors tern raises (the ttrpc/gRPC set; NotImplemented is gRPC's Unimplemented). */
export const ErrorCode = {
  Canceled: Code.Canceled,
  Unknown: Code.Unknown,
  InvalidArgument: Code.InvalidArgument,
  DeadlineExceeded: Code.DeadlineExceeded,
  NotFound: Code.NotFound,
  AlreadyExists: Code.AlreadyExists,
  PermissionDenied: Code.PermissionDenied,
  ResourceExhausted: Code.ResourceExhausted,
  FailedPrecondition: Code.FailedPrecondition,
  Aborted: Code.Aborted,
  OutOfRange: Code.OutOfRange,
  NotImplemented: Code.Unimplemented,
  Internal: Code.Internal,
  Unavailable: Code.Unavailable,
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
