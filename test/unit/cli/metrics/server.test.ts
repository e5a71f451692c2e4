// The endpoint's HTTP behaviour: /metrics only (404 elsewhere, 405 for other
// methods, HEAD without a body), scrapes at the same time share one
// collection, a failed scrape is a 500; on a unix socket a live server is
// refused and a dead one's file replaced; loopback TCP works.
import { existsSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { serveMetrics } from '../../../../src/cli/metrics/server';
import { httpGet } from './scrape-client';

let dir: string;
beforeAll(() => {
  dir = mkdtempSync(join(tmpdir(), 'tern-msrv-'));
});
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('serveMetrics', () => {
  it('answers GET and HEAD /metrics, 404 elsewhere, 405 for other methods', async () => {
    const path = join(dir, 'a.sock');
    let scrapes = 0;
    const srv = await serveMetrics({ kind: 'unix', path }, async () => `# HELP tern_x X.\n# TYPE tern_x gauge\ntern_x ${++scrapes}\n`);
    try {
      expect(srv.address).toBe(`unix:${path}`);
      expect(statSync(path).mode & 0o777).toBe(0o600);
      const get = await httpGet({ socketPath: path });
      expect(get).toMatchObject({ status: 200, body: '# HELP tern_x X.\n# TYPE tern_x gauge\ntern_x 1\n' });
      expect((await httpGet({ socketPath: path }, '/metrics?x=1')).status).toBe(200);
      const head = await httpGet({ socketPath: path }, '/metrics', 'HEAD');
      expect(head.status).toBe(200);
      expect(head.body).toBe('');
      expect(Number(head.headers['content-length'])).toBeGreaterThan(0);
      expect((await httpGet({ socketPath: path }, '/')).status).toBe(404);
      expect((await httpGet({ socketPath: path }, '/metricsx')).status).toBe(404);
      const post = await httpGet({ socketPath: path }, '/metrics', 'POST');
      expect(post.status).toBe(405);
      expect(post.headers.allow).toBe('GET, HEAD');
    } finally {
      await srv.close();
    }
    expect(existsSync(path)).toBe(false);
  });

  it('lets scrapes that arrive during one share its answer, and answers 500 when a scrape fails', async () => {
    const path = join(dir, 'b.sock');
    let scrapes = 0;
    let fail = false;
    const errors: unknown[] = [];
    const srv = await serveMetrics(
      { kind: 'unix', path },
      async () => {
        scrapes++;
        await new Promise((r) => setTimeout(r, 200));
        if (fail) throw new Error('state dir unreadable');
        return `n ${scrapes}\n`;
      },
      (e) => errors.push(e),
    );
    try {
      const answers = await Promise.all([1, 2, 3].map(() => httpGet({ socketPath: path })));
      expect(answers.map((a) => a.body)).toEqual(['n 1\n', 'n 1\n', 'n 1\n']);
      expect((await httpGet({ socketPath: path })).body).toBe('n 2\n');
      fail = true;
      const bad = await httpGet({ socketPath: path });
      expect(bad.status).toBe(500);
      expect(bad.body).toMatch(/state dir unreadable/);
      expect(errors).toHaveLength(1);
    } finally {
      await srv.close();
    }
  });

  it("refuses a socket another server answers on, and replaces a dead one's file", async () => {
    const path = join(dir, 'c.sock');
    const first = await serveMetrics({ kind: 'unix', path }, async () => '');
    try {
      await expect(serveMetrics({ kind: 'unix', path }, async () => '')).rejects.toThrow(/another server already listens on/);
    } finally {
      await first.close();
    }
    writeFileSync(path, 'left behind');
    const second = await serveMetrics({ kind: 'unix', path }, async () => 'ok\n');
    try {
      expect((await httpGet({ socketPath: path })).body).toBe('ok\n');
    } finally {
      await second.close();
    }
  });

  it('listens on loopback TCP', async () => {
    const srv = await serveMetrics({ kind: 'tcp', host: '127.0.0.1', port: 0 }, async () => 'tcp\n');
    try {
      const port = Number(/^127\.0\.0\.1:(\d+)$/.exec(srv.address)![1]);
      expect(port).toBeGreaterThan(0);
      expect((await httpGet({ host: '127.0.0.1', port })).body).toBe('tcp\n');
    } finally {
      await srv.close();
    }
  });
});
