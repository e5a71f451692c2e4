// Publishes task events to containerd: Events/Forward on TTRPC_ADDRESS, in
// order, one at a time, reconnecting with back-off. Events are never dropped
// silently: a queue bounded by count, and a final flush with a deadline on
// shutdown.
import { encode } from '../common/proto';
import type { Logger } from '../common/logging';
import { TtrpcClient } from '../ttrpc/client';
import { fromDate } from './timestamp';

const SERVICE = 'containerd.services.events.ttrpc.v1.Events';
const MAX_QUEUE = 10_000;
/** Deadline to connect to containerd's TTRPC_ADDRESS. */
const CONNECT_TIMEOUT_MS = 5_000;
/** Deadline of one Events/Forward call. */
const FORWARD_TIMEOUT_MS = 5_000;
/** How long close() lets the queue drain before it gives up on what is left. */
export const CLOSE_FLUSH_TIMEOUT_MS = 3_000;
const BACKOFF_FIRST_MS = 50;
const BACKOFF_MAX_MS = 2_000;

export type TopicEvent =
  | { topic: '/tasks/create'; type: 'TaskCreate'; event: object }
  | { topic: '/tasks/start'; type: 'TaskStart'; event: object }
  | { topic: '/tasks/exit'; type: 'TaskExit'; event: object }
  | { topic: '/tasks/delete'; type: 'TaskDelete'; event: object }
  | { topic: '/tasks/exec-added'; type: 'TaskExecAdded'; event: object }
  | { topic: '/tasks/exec-started'; type: 'TaskExecStarted'; event: object }
  | { topic: '/tasks/oom'; type: 'TaskOOM'; event: object }
  | { topic: '/tasks/paused'; type: 'TaskPaused'; event: object }
  | { topic: '/tasks/resumed'; type: 'TaskResumed'; event: object };

interface Queued {
  envelope: Uint8Array;
  topic: string;
}

export class EventPublisher {
  private queue: Queued[] = [];
  private client?: TtrpcClient;
  private running = false;
  private closed = false;
  private idle: Array<() => void> = [];
  /** Ends the back-off sleep between retries early (close()). */
  private wake?: () => void;

  constructor(
    private readonly address: string | undefined,
    private readonly namespace: string,
    private readonly log: Logger,
  ) {}

  publish(e: TopicEvent): void {
    if (!this.address) {
      this.log.warn({ topic: e.topic }, 'TTRPC_ADDRESS not set: event not published');
      return;
    }
    if (this.queue.length >= MAX_QUEUE) {
      this.log.error({ topic: e.topic }, 'event queue full: dropping event');
      return;
    }
    const typeName = `containerd.events.${e.type}`;
    const envelope = encode('containerd.services.events.ttrpc.v1.ForwardRequest', {
      envelope: {
        timestamp: fromDate(new Date()),
        namespace: this.namespace,
        topic: e.topic,
        event: { type_url: typeName, value: encode(typeName, e.event) },
      },
    });
    this.queue.push({ envelope, topic: e.topic });
    void this.pump();
  }

  private async pump(): Promise<void> {
    if (this.running) return;
    this.running = true;
    let backoff = BACKOFF_FIRST_MS;
    while (this.queue.length > 0 && !this.closed) {
      const item = this.queue[0]!;
      try {
        if (!this.client) {
          const client = await TtrpcClient.connect(this.address!, CONNECT_TIMEOUT_MS);
          if (this.closed) {
            void client.close();
            break;
          }
          this.client = client;
        }
        await this.client.call(SERVICE, 'Forward', item.envelope, {
          timeoutMs: FORWARD_TIMEOUT_MS,
          metadata: { 'containerd-namespace-ttrpc': this.namespace },
        });
        this.queue.shift();
        backoff = BACKOFF_FIRST_MS;
      } catch (err) {
        if (this.closed) break;
        this.log.warn({ err: (err as Error).message, topic: item.topic }, 'publishing event failed; retrying');
        this.client?.close();
        this.client = undefined;
        await new Promise<void>((r) => {
          const timer = setTimeout(r, backoff);
          this.wake = () => {
            clearTimeout(timer);
            r();
          };
        });
        this.wake = undefined;
        backoff = Math.min(backoff * 2, BACKOFF_MAX_MS);
      }
    }
    this.running = false;
    for (const f of this.idle.splice(0)) f();
  }

  /**
   * Waits until queued events are sent or deadlineMs passes, then closes: the
   * call under way is abandoned, a retry's back-off cut short, and what could
   * not be sent is logged. Leaves no timer or connection behind.
   */
  async close(deadlineMs = CLOSE_FLUSH_TIMEOUT_MS): Promise<void> {
    if (this.queue.length > 0 && this.running) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([new Promise<void>((r) => this.idle.push(r)), new Promise<void>((r) => (timer = setTimeout(r, deadlineMs)))]);
      clearTimeout(timer);
    }
    this.closed = true;
    this.client?.close();
    this.client = undefined;
    this.wake?.();
    if (this.queue.length > 0) {
      this.log.error(
        { events: this.queue.length, topics: [...new Set(this.queue.map((q) => q.topic))] },
        `events not published within ${deadlineMs} ms of closing`,
      );
      this.queue = [];
    }
  }
}
