// The ttrpc envelope messages, hand-coded so this folder stands alone:
//   Request  { service=1 string, method=2 string, payload=3 bytes,
//              timeout_nano=4 int64, metadata=5 repeated KeyValue{key=1, value=2} }
//   Response { status=1 google.rpc.Status{code=1 int32, message=2 string,
//              details=3 repeated Any{type_url=1, value=2}}, payload=2 bytes }
// Decoders throw on malformed input (wrong wire type, truncation).
import protobuf from 'protobufjs/minimal.js';

const { Reader, Writer } = protobuf;
type ProtoReader = protobuf.Reader;

const WIRE_VARINT = 0;
const WIRE_LEN = 2;

export interface KeyValue {
  key: string;
  value: string;
}

export interface RequestMessage {
  service: string;
  method: string;
  payload: Buffer;
  /** Nanoseconds; 0 means no deadline. */
  timeoutNano: number;
  metadata: KeyValue[];
}

export interface AnyMessage {
  typeUrl: string;
  value: Buffer;
}

export interface StatusMessage {
  code: number;
  message: string;
  details: AnyMessage[];
}

export interface ResponseMessage {
  status?: StatusMessage;
  payload: Buffer;
}

// int64 as read by protobufjs: a number, or a Long (two signed 32-bit halves).
function int64ToNumber(v: number | { low: number; high: number }): number {
  return typeof v === 'number' ? v : v.high * 4294967296 + (v.low >>> 0);
}

function expectWire(field: number, got: number, want: number): void {
  if (got !== want) throw new Error(`ttrpc: field ${field} has wire type ${got}, want ${want}`);
}

// Reader#string on a Buffer does not check the length against the input; read bytes (checked) instead.
function readString(r: ProtoReader): string {
  return readBytes(r).toString('utf8');
}

function readBytes(r: ProtoReader): Buffer {
  const b = r.bytes();
  return Buffer.isBuffer(b) ? b : Buffer.from(b.buffer, b.byteOffset, b.length);
}

// Read one message: `onField` handles known fields and returns false for the rest, which are skipped.
function readMessage(bytes: Uint8Array, onField: (r: ProtoReader, field: number, wire: number) => boolean): void {
  const r = Reader.create(bytes);
  while (r.pos < r.len) {
    const tag = r.uint32();
    const field = tag >>> 3;
    const wire = tag & 7;
    if (field === 0) throw new Error('ttrpc: invalid field number 0');
    if (!onField(r, field, wire)) r.skipType(wire);
  }
}

function encodeKeyValue(kv: KeyValue): Uint8Array {
  const w = Writer.create();
  if (kv.key) w.uint32((1 << 3) | WIRE_LEN).string(kv.key);
  if (kv.value) w.uint32((2 << 3) | WIRE_LEN).string(kv.value);
  return w.finish();
}

function decodeKeyValue(bytes: Uint8Array): KeyValue {
  const kv: KeyValue = { key: '', value: '' };
  readMessage(bytes, (r, field, wire) => {
    if (field === 1) {
      expectWire(field, wire, WIRE_LEN);
      kv.key = readString(r);
      return true;
    }
    if (field === 2) {
      expectWire(field, wire, WIRE_LEN);
      kv.value = readString(r);
      return true;
    }
    return false;
  });
  return kv;
}

export function encodeRequest(req: RequestMessage): Uint8Array {
  const w = Writer.create();
  if (req.service) w.uint32((1 << 3) | WIRE_LEN).string(req.service);
  if (req.method) w.uint32((2 << 3) | WIRE_LEN).string(req.method);
  if (req.payload.length > 0) w.uint32((3 << 3) | WIRE_LEN).bytes(req.payload);
  if (req.timeoutNano) w.uint32((4 << 3) | WIRE_VARINT).int64(Math.trunc(req.timeoutNano));
  for (const kv of req.metadata) w.uint32((5 << 3) | WIRE_LEN).bytes(encodeKeyValue(kv));
  return w.finish();
}

export function decodeRequest(bytes: Uint8Array): RequestMessage {
  const req: RequestMessage = { service: '', method: '', payload: Buffer.alloc(0), timeoutNano: 0, metadata: [] };
  readMessage(bytes, (r, field, wire) => {
    switch (field) {
      case 1:
        expectWire(field, wire, WIRE_LEN);
        req.service = readString(r);
        return true;
      case 2:
        expectWire(field, wire, WIRE_LEN);
        req.method = readString(r);
        return true;
      case 3:
        expectWire(field, wire, WIRE_LEN);
        req.payload = readBytes(r);
        return true;
      case 4:
        expectWire(field, wire, WIRE_VARINT);
        req.timeoutNano = int64ToNumber(r.int64());
        return true;
      case 5:
        expectWire(field, wire, WIRE_LEN);
        req.metadata.push(decodeKeyValue(r.bytes()));
        return true;
      default:
        return false;
    }
  });
  return req;
}

function encodeAny(a: AnyMessage): Uint8Array {
  const w = Writer.create();
  if (a.typeUrl) w.uint32((1 << 3) | WIRE_LEN).string(a.typeUrl);
  if (a.value.length > 0) w.uint32((2 << 3) | WIRE_LEN).bytes(a.value);
  return w.finish();
}

function decodeAny(bytes: Uint8Array): AnyMessage {
  const a: AnyMessage = { typeUrl: '', value: Buffer.alloc(0) };
  readMessage(bytes, (r, field, wire) => {
    if (field === 1) {
      expectWire(field, wire, WIRE_LEN);
      a.typeUrl = readString(r);
      return true;
    }
    if (field === 2) {
      expectWire(field, wire, WIRE_LEN);
      a.value = readBytes(r);
      return true;
    }
    return false;
  });
  return a;
}

function encodeStatus(s: StatusMessage): Uint8Array {
  const w = Writer.create();
  if (s.code) w.uint32((1 << 3) | WIRE_VARINT).int32(s.code);
  if (s.message) w.uint32((2 << 3) | WIRE_LEN).string(s.message);
  for (const d of s.details) w.uint32((3 << 3) | WIRE_LEN).bytes(encodeAny(d));
  return w.finish();
}

function decodeStatus(bytes: Uint8Array): StatusMessage {
  const s: StatusMessage = { code: 0, message: '', details: [] };
  readMessage(bytes, (r, field, wire) => {
    switch (field) {
      case 1:
        expectWire(field, wire, WIRE_VARINT);
        s.code = r.int32();
        return true;
      case 2:
        expectWire(field, wire, WIRE_LEN);
        s.message = readString(r);
        return true;
      case 3:
        expectWire(field, wire, WIRE_LEN);
        s.details.push(decodeAny(r.bytes()));
        return true;
      default:
        return false;
    }
  });
  return s;
}

/** The status field is always written (an OK status encodes as an empty message), like ttrpc-go. */
export function encodeResponse(res: ResponseMessage): Uint8Array {
  const w = Writer.create();
  const status = res.status ?? { code: 0, message: '', details: [] };
  w.uint32((1 << 3) | WIRE_LEN).bytes(encodeStatus(status));
  if (res.payload.length > 0) w.uint32((2 << 3) | WIRE_LEN).bytes(res.payload);
  return w.finish();
}

export function decodeResponse(bytes: Uint8Array): ResponseMessage {
  const res: ResponseMessage = { payload: Buffer.alloc(0) };
  readMessage(bytes, (r, field, wire) => {
    if (field === 1) {
      expectWire(field, wire, WIRE_LEN);
      res.status = decodeStatus(r.bytes());
      return true;
    }
    if (field === 2) {
      expectWire(field, wire, WIRE_LEN);
      res.payload = readBytes(r);
      return true;
    }
    return false;
  });
  return res;
}
