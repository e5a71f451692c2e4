// The generated descriptors are current, and containerd messages encode with
// containerd's exact field numbers.
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import protobuf from 'protobufjs';
import { describe, expect, it } from 'vitest';
import { anyPack, anyUnpack, decode, encode, protoRoot, protoType } from '../../../src/common/proto';

const repo = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');
const hex = (b: Uint8Array) => Buffer.from(b).toString('hex');
const GO_ZERO_TIME = -62135596800;

describe('proto descriptors', () => {
  it('the committed JSON equals what scripts/gen-proto.mjs produces from proto/', () => {
    const fresh = execFileSync(process.execPath, [join(repo, 'scripts', 'gen-proto.mjs'), '--stdout'], { encoding: 'utf8', timeout: 30_000 });
    const committed = readFileSync(join(repo, 'src', 'common', 'proto-descriptors.json'), 'utf8');
    expect(committed === fresh, 'src/common/proto-descriptors.json is stale: run node scripts/gen-proto.mjs').toBe(true);
  });

  it('the committed TypeScript types equal what scripts/gen-proto.mjs produces from proto/', () => {
    const fresh = execFileSync(process.execPath, [join(repo, 'scripts', 'gen-proto.mjs'), '--stdout-types'], { encoding: 'utf8', timeout: 30_000 });
    const committed = readFileSync(join(repo, 'src', 'common', 'proto-types.ts'), 'utf8');
    expect(committed === fresh, 'src/common/proto-types.ts is stale: run node scripts/gen-proto.mjs').toBe(true);
  });

  it('has the Task service with its 17 methods and types', () => {
    const task = protoRoot().lookupService('containerd.task.v2.Task');
    const methods = Object.fromEntries(Object.values(task.methods).map((m) => [m.name, `${m.requestType} -> ${m.responseType}`]));
    expect(Object.keys(methods)).toHaveLength(17);
    expect(methods).toMatchObject({
      State: 'StateRequest -> StateResponse',
      Create: 'CreateTaskRequest -> CreateTaskResponse',
      Delete: 'DeleteRequest -> DeleteResponse',
      Kill: 'KillRequest -> google.protobuf.Empty',
      Exec: 'ExecProcessRequest -> google.protobuf.Empty',
      Wait: 'WaitRequest -> WaitResponse',
      Connect: 'ConnectRequest -> ConnectResponse',
      Shutdown: 'ShutdownRequest -> google.protobuf.Empty',
    });
    const forward = protoRoot().lookupService('containerd.services.events.ttrpc.v1.Events').methods.Forward;
    expect(forward?.requestType).toBe('ForwardRequest');
  });

  it('keeps field names in snake_case', () => {
    expect(protoType('containerd.task.v2.CreateTaskRequest').fields.parent_checkpoint?.id).toBe(9);
    expect(protoType('containerd.task.v2.StateResponse').fields.exec_id?.id).toBe(11);
  });

  it('throws a clear error for unknown or non-message names', () => {
    expect(() => protoType('containerd.task.v2.Nope')).toThrow(/unknown protobuf message type "containerd.task.v2.Nope"/);
    expect(() => protoType('containerd.task.v2.Task')).toThrow(/unknown protobuf message type/);
    expect(() => protoType('Status')).toThrow(/unknown protobuf message type/); // bare names are not searched
    expect(protoType('.containerd.types.Mount')).toBeInstanceOf(protobuf.Type);
  });
});

describe('encode/decode with containerd field numbers', () => {
  it('CreateTaskResponse{pid:5} is 08 05', () => {
    expect(hex(encode('containerd.task.v2.CreateTaskResponse', { pid: 5 }))).toBe('0805');
    expect(decode('containerd.task.v2.CreateTaskResponse', Buffer.from('0805', 'hex'))).toEqual({ pid: 5 });
  });

  it('Empty encodes to zero bytes', () => {
    expect(encode('google.protobuf.Empty', {}).length).toBe(0);
  });

  it('ForwardRequest/Envelope: envelope=1, timestamp=1, namespace=2, topic=3, event=4', () => {
    const bytes = encode('containerd.services.events.ttrpc.v1.ForwardRequest', {
      envelope: { namespace: 'ns', topic: '/t', event: { type_url: 'a', value: Buffer.from([1]) } },
    });
    // 0a 10 | 12 02 "ns" | 1a 02 "/t" | 22 06 (0a 01 "a" 12 01 01)
    expect(hex(bytes)).toBe('0a10' + '12026e73' + '1a022f74' + '2206' + '0a0161' + '120101');
    const env = encode('containerd.services.events.ttrpc.v1.Envelope', { timestamp: { seconds: 1, nanos: 2 } });
    expect(hex(env)).toBe('0a04' + '0801' + '1002');
  });

  it('Mount, KillRequest, ExecProcessRequest, StateResponse field numbers', () => {
    expect(hex(encode('containerd.types.Mount', { type: 'a', source: 'b', target: 'c', options: ['d', 'e'] }))).toBe(
      '0a0161' + '120162' + '1a0163' + '220164' + '220165',
    );
    expect(hex(encode('containerd.task.v2.KillRequest', { id: 'x', exec_id: 'y', signal: 9, all: true }))).toBe('0a0178' + '120179' + '1809' + '2001');
    expect(hex(encode('containerd.task.v2.ExecProcessRequest', { terminal: true, stdout: 'o', spec: { type_url: 'p' } }))).toBe(
      '1801' + '2a016f' + '3a03' + '0a0170',
    );
    expect(hex(encode('containerd.task.v2.StateResponse', { pid: 7, status: 2, exit_status: 1, exec_id: 'e' }))).toBe('1807' + '2002' + '4801' + '5a0165');
    expect(hex(encode('containerd.task.v2.UpdateTaskRequest', { annotations: { k: 'v' } }))).toBe('1a06' + '0a016b' + '120176');
    expect(hex(encode('containerd.task.v2.ConnectResponse', { shim_pid: 1, task_pid: 2, version: '2' }))).toBe('0801' + '1002' + '1a0132');
  });

  it('runc and runtimeoptions Options field numbers', () => {
    expect(hex(encode('containerd.runc.v1.Options', { binary_name: 'r', root: 's', systemd_cgroup: true, criu_work_path: 'w' }))).toBe(
      '320172' + '3a0173' + '4801' + '5a0177',
    );
    expect(decode('runtimeoptions.v1.Options', Buffer.from('0a0174' + '120163', 'hex'))).toEqual({ type_url: 't', config_path: 'c' });
  });

  it('events: TaskExit and TaskDelete field numbers, Go zero time as a number', () => {
    const exit = encode('containerd.events.TaskExit', { container_id: 'c', id: 'i', pid: 3, exit_status: 137, exited_at: { seconds: 5 } });
    expect(hex(exit)).toBe('0a0163' + '120169' + '1803' + '208901' + '2a020805');
    const del = { container_id: 'c', pid: 1, exit_status: 0, exited_at: { seconds: GO_ZERO_TIME, nanos: 0 }, id: 'x' };
    const back = decode<{ exited_at: { seconds: number; nanos: number } }>('containerd.events.TaskDelete', encode('containerd.events.TaskDelete', del));
    expect(back).toEqual(del);
    expect(typeof back.exited_at.seconds).toBe('number');
  });

  it('decode fills defaults, gives arrays, Buffers for bytes and numbers for enums', () => {
    const empty = decode<Record<string, unknown>>('containerd.task.v2.StateResponse', new Uint8Array(0));
    expect(empty).toMatchObject({ id: '', pid: 0, status: 0, terminal: false, exec_id: '' });
    expect(decode('containerd.task.v2.PidsResponse', new Uint8Array(0))).toEqual({ processes: [] });
    const req = decode<{ rootfs: unknown[]; options: { type_url: string; value: Buffer } }>(
      'containerd.task.v2.CreateTaskRequest',
      encode('containerd.task.v2.CreateTaskRequest', { id: 'c1', options: { type_url: 'runtimeoptions.v1.Options', value: Buffer.from([1, 2]) } }),
    );
    expect(req.rootfs).toEqual([]);
    expect(Buffer.isBuffer(req.options.value)).toBe(true);
    expect([...req.options.value]).toEqual([1, 2]);
  });

  it('rejects invalid values and truncated input', () => {
    expect(() => encode('containerd.task.v2.KillRequest', { signal: 'nine' })).toThrow(/cannot encode containerd.task.v2.KillRequest/);
    expect(() => decode('containerd.task.v2.KillRequest', Buffer.from('0a05ab', 'hex'))).toThrow();
  });

  it('anyPack / anyUnpack round-trip with a bare type name as type_url', () => {
    const any = anyPack('containerd.events.TaskOOM', 'containerd.events.TaskOOM', { container_id: 'c1' });
    expect(any.type_url).toBe('containerd.events.TaskOOM');
    expect(hex(any.value)).toBe('0a026331');
    expect(anyUnpack(any)).toEqual({ typeName: 'containerd.events.TaskOOM', message: { container_id: 'c1' } });
    expect(anyUnpack({ type_url: 'type.googleapis.com/runtimeoptions.v1.Options', value: Buffer.from('120163', 'hex') })).toEqual({
      typeName: 'runtimeoptions.v1.Options',
      message: { type_url: '', config_path: 'c' },
    });
    expect(anyUnpack({ type_url: 'types.containerd.io/opencontainers/runtime-spec/1/Process', value: Buffer.from('{}') })).toBeUndefined();
  });
});
