// The "task" server: the shim's server as src/shim/serve.ts builds it (`new
// TtrpcServer()` + registerTask) around the real TaskService, Sandbox and
// EventPublisher, what each RPC answers with no container, and valid requests
// for it that never reach a VM.
import { join } from 'node:path';
import { expect } from 'vitest';
import { defaultConfig } from '../../../../src/common/config';
import { silentLogger } from '../../../../src/common/logging';
import { decode, encode } from '../../../../src/common/proto';
import { createDriver } from '../../../../src/hypervisor/index';
import { EventPublisher } from '../../../../src/shim/events';
import { sandboxDir } from '../../../../src/shim/paths';
import { Sandbox } from '../../../../src/shim/sandbox';
import { registerTask } from '../../../../src/shim/serve';
import { TaskService, VERSION } from '../../../../src/shim/task-service';
import type { RequestMessage } from '../../../../src/ttrpc/messages';
import { TtrpcServer } from '../../../../src/ttrpc/server';
import { Code } from '../../../../src/ttrpc/status';
import { withDeadline } from './deadline';
import { request } from './frames';
import type { HandlerOutcome } from './model';
import type { Rng } from './prng';
import { healthCheck, T, TASK_SVC, type Target } from './target';

// Request type of every method registerTask registers (src/shim/serve.ts).
const TASK_REQUESTS: Record<string, string> = {
  Create: 'CreateTaskRequest',
  Start: 'StartRequest',
  State: 'StateRequest',
  Wait: 'WaitRequest',
  Kill: 'KillRequest',
  Delete: 'DeleteRequest',
  Pids: 'PidsRequest',
  CloseIO: 'CloseIORequest',
  ResizePty: 'ResizePtyRequest',
  Connect: 'ConnectRequest',
  Shutdown: 'ShutdownRequest',
  Exec: 'ExecProcessRequest',
  Pause: 'PauseRequest',
  Resume: 'ResumeRequest',
  Checkpoint: 'CheckpointTaskRequest',
  Update: 'UpdateTaskRequest',
  Stats: 'StatsRequest',
};
// Methods that look a container up first: with none created, NotFound.
const TASK_LOOKUPS = ['Start', 'State', 'Wait', 'Kill', 'Delete', 'Pids', 'CloseIO', 'ResizePty', 'Exec', 'Pause', 'Resume', 'Update', 'Stats'];

/** The real TaskService with no container: what each RPC answers. */
function taskOutcome(req: RequestMessage): HandlerOutcome {
  if (req.service !== TASK_SVC || !Object.hasOwn(TASK_REQUESTS, req.method)) return 'unregistered';
  let body: { id?: string };
  try {
    body = decode<{ id?: string }>(T + TASK_REQUESTS[req.method]!, req.payload);
  } catch (err) {
    // registerTask decodes before the service runs: the caller's error.
    return { code: Code.InvalidArgument, message: `${req.method}: cannot decode ${T}${TASK_REQUESTS[req.method]!}: ${(err as Error).message}` };
  }
  switch (req.method) {
    case 'Connect':
      return {
        code: Code.OK,
        what: 'ConnectResponse',
        payload: (p) => {
          const res = decode<{ shim_pid: number; task_pid: number; version: string }>(`${T}ConnectResponse`, p);
          return res.shim_pid === process.pid && res.task_pid === 0 && res.version === VERSION;
        },
      };
    case 'Checkpoint':
      return { code: Code.Unimplemented, message: 'Checkpoint: not implemented by tern' };
    case 'Create':
      // Only the empty id is safe: anything else would go on to read a bundle and boot a VM.
      return body.id === '' ? { code: Code.InvalidArgument, message: 'create: empty container id' } : 'ambiguous';
    case 'Shutdown':
      return 'ambiguous';
    default:
      return { code: Code.NotFound, message: `container ${body.id}: not found` };
  }
}

function taskValidRequest(rng: Rng): Buffer {
  const id = rng.chance(0.8) ? rng.string(24) : '';
  const exec_id = rng.chance(0.5) ? rng.string(8) : '';
  const extra: Partial<RequestMessage> = rng.chance(0.2) ? { timeoutNano: rng.pick([1, 1000, 5e9]) } : {};
  switch (rng.int(8)) {
    case 0:
      return request(TASK_SVC, 'Kill', encode(`${T}KillRequest`, { id, exec_id, signal: rng.pick([0, 9, 15, 65, 0xffffffff]), all: rng.chance(0.5) }), extra);
    case 1:
      return request(TASK_SVC, 'Delete', encode(`${T}DeleteRequest`, { id, exec_id }), extra);
    case 2:
      return request(TASK_SVC, 'Connect', encode(`${T}ConnectRequest`, { id }), extra);
    case 3:
      return request(TASK_SVC, 'Checkpoint', encode(`${T}CheckpointTaskRequest`, { id }), extra);
    case 4:
      return request(TASK_SVC, 'Create', encode(`${T}CreateTaskRequest`, { id: '', bundle: rng.string(16) }), extra);
    case 5: {
      const m = rng.pick(TASK_LOOKUPS);
      return request(TASK_SVC, m, encode(T + TASK_REQUESTS[m]!, { id }), extra);
    }
    default:
      return request(TASK_SVC, 'State', encode(`${T}StateRequest`, { id, exec_id }), extra);
  }
}

/**
 * Start the task server on dir/task.sock, its state kept under dir; `onShutdown`
 * is the shutdown hook the shim passes to TaskService.
 */
export async function startTaskServer(dir: string, onShutdown: () => void): Promise<{ target: Target; sandbox: Sandbox }> {
  // The shim's server, wired as src/shim/serve.ts wires it, with state kept in the temp dir.
  const cfg = defaultConfig();
  cfg.runtime.stateDir = join(dir, 'state');
  cfg.runtime.cacheDir = join(dir, 'cache');
  cfg.factory.templateDir = join(dir, 'templates');
  cfg.pool.dir = join(dir, 'pool');
  cfg.pool.socket = join(dir, 'pool.sock');
  const driver = createDriver(cfg.hypervisor.driver, silentLogger);
  const sandbox = new Sandbox('fuzz', 'fuzz-pod', sandboxDir(cfg.runtime.stateDir, 'fuzz', 'fuzz-pod'), cfg, driver, silentLogger);
  const events = new EventPublisher(undefined, 'fuzz', silentLogger);
  const svc = new TaskService(sandbox, cfg, events, silentLogger, onShutdown);
  const task = new TtrpcServer();
  registerTask(task, svc, silentLogger);
  const taskPath = join(dir, 'task.sock');
  await task.listen(taskPath);
  const target: Target = {
    name: 'task',
    server: task,
    path: taskPath,
    outcome: taskOutcome,
    validRequest: taskValidRequest,
    garbageRequest: (rng) => request(TASK_SVC, rng.pick([...TASK_LOOKUPS, 'Connect', 'Checkpoint']), rng.bytes(rng.int(40))),
    healthy: () =>
      healthCheck(task, taskPath, async (client) => {
        const reply = await withDeadline(client.call(TASK_SVC, 'Connect', encode(`${T}ConnectRequest`, { id: 'x' })), 5000, 'health check');
        expect(decode(`${T}ConnectResponse`, reply)).toMatchObject({ shim_pid: process.pid, version: VERSION });
      }),
  };
  return { target, sandbox };
}
