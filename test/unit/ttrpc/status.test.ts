// statusFromError maps thrown values to wire codes from numeric codes only.
import { describe, expect, it } from 'vitest';
import { TernError } from '../../../src/common/errors';
import { Code, codeName, statusFromError, TtrpcError } from '../../../src/ttrpc/status';

describe('status', () => {
  it('has the gRPC code numbers', () => {
    expect(Code).toMatchObject({
      OK: 0,
      Canceled: 1,
      Unknown: 2,
      InvalidArgument: 3,
      DeadlineExceeded: 4,
      NotFound: 5,
      ResourceExhausted: 8,
      Unimplemented: 12,
      Internal: 13,
      Unavailable: 14,
      Unauthenticated: 16,
    });
    expect(codeName(12)).toBe('Unimplemented');
    expect(codeName(99)).toBe('Code(99)');
  });

  it('uses grpcCode first (TernError)', () => {
    expect(statusFromError(new TernError('NotFound', 'container x: not found'))).toEqual({ code: 5, message: 'container x: not found' });
    expect(statusFromError(new TernError('NotImplemented', 'n'))).toEqual({ code: 12, message: 'n' });
    expect(statusFromError(new TernError('FailedPrecondition', 'f')).code).toBe(9);
  });

  it('uses a numeric code in 1..16, else Unknown; never the message text', () => {
    expect(statusFromError(new TtrpcError(14, 'gone'))).toEqual({ code: 14, message: 'gone' });
    expect(statusFromError(Object.assign(new Error('x'), { code: 6 }))).toEqual({ code: 6, message: 'x' });
    expect(statusFromError(Object.assign(new Error('ENOENT: no such file'), { code: 'ENOENT' })).code).toBe(2);
    expect(statusFromError(Object.assign(new Error('y'), { code: 0 })).code).toBe(2);
    expect(statusFromError(Object.assign(new Error('y'), { code: 17 })).code).toBe(2);
    expect(statusFromError(new Error('not found'))).toEqual({ code: 2, message: 'not found' });
    expect(statusFromError('plain string')).toEqual({ code: 2, message: 'plain string' });
    expect(statusFromError(undefined)).toEqual({ code: 2, message: 'undefined' });
  });

  it('TtrpcError carries its code', () => {
    const e = new TtrpcError(Code.DeadlineExceeded, 'late');
    expect(e).toBeInstanceOf(Error);
    expect(e.code).toBe(4);
    expect(e.grpcCode).toBe(4);
    expect(e.name).toBe('TtrpcError(DeadlineExceeded)');
  });
});
