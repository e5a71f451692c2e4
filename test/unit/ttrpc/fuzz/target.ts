// What the attacks need of a server under test, the service names the two
// servers register, and the health check every attack ends with.
import { TtrpcClient } from '../../../../src/ttrpc/client';
import type { RequestMessage } from '../../../../src/ttrpc/messages';
import type { TtrpcServer } from '../../../../src/ttrpc/server';
import { withDeadline } from './deadline';
import type { HandlerOutcome } from './model';
import type { Rng } from './prng';
import { nextConnection } from './raw-client';

export const FUZZ_SVC = 'fuzz.v1.Echo';
export const TASK_SVC = 'containerd.task.v2.Task';
export const T = 'containerd.task.v2.';

export interface Target {
  name: 'fuzz' | 'task';
  server: TtrpcServer;
  path: string;
  outcome(req: RequestMessage): HandlerOutcome;
  /** The envelope of a request this server answers normally. */
  validRequest(rng: Rng): Buffer;
  /** The envelope of a request to a registered method whose payload is junk. */
  garbageRequest(rng: Rng): Buffer;
  /** A new connection gets a correct answer to a valid request. */
  healthy(): Promise<void>;
}

/** A new connection to `path` gets through `ask`; then it is closed on both sides. */
export async function healthCheck(server: TtrpcServer, path: string, ask: (client: TtrpcClient) => Promise<void>): Promise<void> {
  const connP = nextConnection(server);
  const client = await TtrpcClient.connect(path, 5000);
  const conn = await connP;
  try {
    await ask(client);
  } finally {
    await client.close();
  }
  await withDeadline(conn.closed, 5000, 'health-check connection closed');
}
