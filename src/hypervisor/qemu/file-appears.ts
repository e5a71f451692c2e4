// Waiting for a file another process creates (QEMU's QMP socket), without
// polling: an inotify watch on its directory (fs.watch), checked once more
// after the watch is in place so a file created just before is not missed.
import fs from 'node:fs';
import path from 'node:path';

/**
 * Resolves 'appeared' once `file` exists, 'timeout' after `ms`, or 'stopped'
 * when `stop` settles first (the creating process exited). The watch and the
 * timer are gone when it resolves.
 */
export function fileAppears(file: string, ms: number, stop: Promise<unknown>): Promise<'appeared' | 'timeout' | 'stopped'> {
  return new Promise((resolve) => {
    const name = path.basename(file);
    let done = false;
    let watcher: fs.FSWatcher | undefined;
    let timer: NodeJS.Timeout | undefined;
    const finish = (how: 'appeared' | 'timeout' | 'stopped'): void => {
      if (done) return;
      done = true;
      watcher?.close();
      clearTimeout(timer);
      resolve(how);
    };
    try {
      watcher = fs.watch(path.dirname(file), (_event, changed) => {
        if ((changed === null || changed === name) && fs.existsSync(file)) finish('appeared');
      });
      // A watch that breaks (the directory removed) leaves the deadline and the stop to decide.
      watcher.on('error', () => watcher?.close());
    } catch {
      // No watch possible: the existence check below, the deadline and the stop still decide.
    }
    timer = setTimeout(() => finish(fs.existsSync(file) ? 'appeared' : 'timeout'), ms);
    stop.then(
      () => finish('stopped'),
      () => finish('stopped'),
    );
    if (fs.existsSync(file)) finish('appeared');
  });
}
