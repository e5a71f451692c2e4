// QMP line splitting and message classification (pure, no I/O).
import { describe, expect, it } from 'vitest';
import { encodeCommand, parseQmpMessage, splitLines } from '../../../../src/hypervisor/qemu/qmp-lines.js';

describe('splitLines', () => {
  it('returns complete CRLF lines and keeps the partial tail', () => {
    expect(splitLines('', '{"a":1}\r\n{"b":')).toEqual({ lines: ['{"a":1}'], rest: '{"b":' });
    expect(splitLines('{"b":', '2}\r\n')).toEqual({ lines: ['{"b":2}'], rest: '' });
  });

  it('handles many lines in one chunk, bare LF and blank lines', () => {
    expect(splitLines('', '{"x":1}\n\r\n{"y":2}\r\n{"z":3}\n')).toEqual({
      lines: ['{"x":1}', '{"y":2}', '{"z":3}'],
      rest: '',
    });
  });

  it('reassembles a line fed one character at a time', () => {
    const input = '{"return": {"status": "running"}, "id": 7}\r\n';
    let rest = '';
    const lines: string[] = [];
    for (const ch of input) {
      const r = splitLines(rest, ch);
      rest = r.rest;
      lines.push(...r.lines);
    }
    expect(lines).toEqual(['{"return": {"status": "running"}, "id": 7}']);
    expect(rest).toBe('');
  });

  it('keeps a CR split from its LF', () => {
    const a = splitLines('', '{"a":1}\r');
    expect(a).toEqual({ lines: [], rest: '{"a":1}\r' });
    expect(splitLines(a.rest, '\n')).toEqual({ lines: ['{"a":1}'], rest: '' });
  });
});

describe('parseQmpMessage', () => {
  it('classifies the greeting', () => {
    const m = parseQmpMessage('{"QMP": {"version": {"qemu": {"micro": 22, "minor": 2, "major": 7}}, "capabilities": ["oob"]}}');
    expect(m).toMatchObject({ kind: 'greeting', capabilities: ['oob'] });
  });

  it('classifies returns, with and without id', () => {
    expect(parseQmpMessage('{"return": {}, "id": 3}')).toEqual({ kind: 'return', id: 3, value: {} });
    expect(parseQmpMessage('{"return": [1, 2]}')).toEqual({ kind: 'return', id: undefined, value: [1, 2] });
  });

  it('classifies errors with class and desc', () => {
    expect(parseQmpMessage('{"id": 4, "error": {"class": "DeviceNotFound", "desc": "Device \'x\' not found"}}')).toEqual({
      kind: 'error',
      id: 4,
      errorClass: 'DeviceNotFound',
      desc: "Device 'x' not found",
    });
  });

  it('classifies events with data and timestamp', () => {
    expect(
      parseQmpMessage(
        '{"timestamp": {"seconds": 1700000000, "microseconds": 5}, "event": "DEVICE_DELETED", "data": {"device": "vol1", "path": "/machine/peripheral/vol1"}}',
      ),
    ).toEqual({
      kind: 'event',
      name: 'DEVICE_DELETED',
      data: { device: 'vol1', path: '/machine/peripheral/vol1' },
      timestamp: { seconds: 1700000000, microseconds: 5 },
    });
  });

  it('marks anything else unknown and throws on invalid JSON', () => {
    expect(parseQmpMessage('[1]')).toEqual({ kind: 'unknown', raw: [1] });
    expect(parseQmpMessage('{"hello": 1}').kind).toBe('unknown');
    expect(() => parseQmpMessage('{"return"')).toThrow(SyntaxError);
  });
});

describe('encodeCommand', () => {
  it('writes execute, arguments and id on one line', () => {
    expect(encodeCommand('device_del', { id: 'vol1' }, 9)).toBe('{"execute":"device_del","arguments":{"id":"vol1"},"id":9}\n');
    expect(encodeCommand('quit', undefined, 1)).toBe('{"execute":"quit","id":1}\n');
  });
});
