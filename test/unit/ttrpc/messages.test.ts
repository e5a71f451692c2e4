// The hand-coded ttrpc envelope must match proto/ttrpc/request.proto byte for byte.
import { describe, expect, it } from 'vitest';
import { decode, encode } from '../../../src/common/proto';
import { decodeRequest, decodeResponse, encodeRequest, encodeResponse } from '../../../src/ttrpc/messages';

const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');

describe('ttrpc envelope', () => {
  const req = {
    service: 'containerd.task.v2.Task',
    method: 'Create',
    payload: Buffer.from([8, 5]),
    timeoutNano: 3_000_000_000,
    metadata: [
      { key: 'containerd-namespace-ttrpc', value: 'default' },
      { key: 'x', value: 'y' },
    ],
  };

  it('encodes Request with the field numbers of ttrpc.Request', () => {
    const bytes = encodeRequest(req);
    const generated = encode('ttrpc.Request', {
      service: req.service,
      method: req.method,
      payload: req.payload,
      timeout_nano: req.timeoutNano,
      metadata: req.metadata,
    });
    expect(hex(bytes)).toBe(hex(generated));
    // service is field 1 (0x0a), method field 2 (0x12), payload 3 (0x1a), timeout_nano 4 (0x20)
    expect(hex(encodeRequest({ service: 's', method: 'm', payload: Buffer.from([1]), timeoutNano: 1, metadata: [] }))).toBe(
      '0a0173' + '12016d' + '1a0101' + '2001',
    );
    expect(decodeRequest(bytes)).toEqual(req);
  });

  it('decodes a Request produced from the .proto, skipping unknown fields', () => {
    const bytes = Buffer.concat([
      encode('ttrpc.Request', { service: 'a.B', method: 'C', timeout_nano: 5 }),
      Buffer.from('3a0178', 'hex'), // field 7 (unknown), length 1
    ]);
    expect(decodeRequest(bytes)).toEqual({ service: 'a.B', method: 'C', payload: Buffer.alloc(0), timeoutNano: 5, metadata: [] });
  });

  it('throws on garbage and on wrong wire types', () => {
    expect(() => decodeRequest(Buffer.from([0xff, 0xff, 0xff]))).toThrow();
    expect(() => decodeRequest(Buffer.from('0a05ab', 'hex'))).toThrow(); // truncated string
    expect(() => decodeRequest(Buffer.from('0801', 'hex'))).toThrow(/wire type/); // service as varint
  });

  it('encodes Response: status always present, OK as an empty status', () => {
    expect(hex(encodeResponse({ payload: Buffer.from([8, 5]) }))).toBe('0a00' + '12020805');
    const failed = encodeResponse({ status: { code: 5, message: 'nope', details: [] }, payload: Buffer.alloc(0) });
    expect(hex(failed)).toBe('0a08' + '0805' + '12046e6f7065');
    expect(decode('ttrpc.Response', failed)).toMatchObject({ status: { code: 5, message: 'nope', details: [] } });
  });

  it('decodes Response from the .proto, with details and without status', () => {
    const bytes = encode('ttrpc.Response', {
      status: { code: 9, message: 'bad state', details: [{ type_url: 't', value: Buffer.from([1]) }] },
      payload: Buffer.from('x'),
    });
    expect(decodeResponse(bytes)).toEqual({
      status: { code: 9, message: 'bad state', details: [{ typeUrl: 't', value: Buffer.from([1]) }] },
      payload: Buffer.from('x'),
    });
    expect(decodeResponse(Buffer.from('1201ff', 'hex'))).toEqual({ payload: Buffer.from([0xff]) });
  });
});
