// The error a CRI call rejects with: the gRPC status code (number and name),
// the method called and the runtime's message.
import { status as GrpcStatus } from '@grpc/grpc-js';

export class CriError extends Error {
  /** gRPC status code, e.g. 5 for NOT_FOUND. */
  readonly code: number;
  /** Its name, e.g. "NOT_FOUND". */
  readonly codeName: string;
  /** Full method name, e.g. "RuntimeService/CreateContainer". */
  readonly method: string;
  /** The runtime's own message, without the prefix this class adds. */
  readonly details: string;

  constructor(method: string, code: number, details: string, options?: { cause?: unknown }) {
    const codeName = (GrpcStatus as unknown as Record<number, string>)[code] ?? `CODE_${code}`;
    super(`${method}: ${codeName}: ${details}`, options);
    this.name = 'CriError';
    this.code = code;
    this.codeName = codeName;
    this.method = method;
    this.details = details;
  }

  get isNotFound(): boolean {
    return this.code === GrpcStatus.NOT_FOUND;
  }

  get isDeadlineExceeded(): boolean {
    return this.code === GrpcStatus.DEADLINE_EXCEEDED;
  }
}
