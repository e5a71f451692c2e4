// A sandbox's use of layer images, on disk where the collection can see it
// without asking any process: <layers>/users/<id>/ holds one hard link per
// image the sandbox uses (the VM attaches that link, not the cache's name)
// and `sandbox`, a symlink to the sandbox's state directory. So an image's
// link count minus one is how many sandboxes use it, and a pins directory
// whose sandbox directory is gone (removed, or lost with /run at a reboot)
// is stale. The directory appears whole (made aside, then renamed), so a
// collection never sees it without its `sandbox` link.
import { createHash } from 'node:crypto';
import { chmod, link, mkdir, rename, rm, stat, symlink } from 'node:fs/promises';
import { basename, join } from 'node:path';
import { imageName, PINS_SUBDIR } from './layer-files';

const PINS_DIR_MODE = 0o755; // QEMU may open the links as hypervisor.run_as
export const SANDBOX_LINK = 'sandbox';
export const NEW_PINS_PREFIX = '.new-';

/** The pins directory of the sandbox whose state directory is `sandboxDir`. */
export function pinsDirOf(layersDir: string, sandboxDir: string): string {
  return join(layersDir, PINS_SUBDIR, createHash('sha256').update(sandboxDir).digest('hex').slice(0, 20));
}

export class LayerPins {
  readonly dir: string;
  private made?: Promise<void>;

  constructor(
    readonly layersDir: string,
    readonly sandboxDir: string,
  ) {
    this.dir = pinsDirOf(layersDir, sandboxDir);
  }

  /** Makes the pins directory once: aside, with its `sandbox` link, then renamed into place. */
  private ensure(): Promise<void> {
    this.made ??= (async () => {
      const root = join(this.layersDir, PINS_SUBDIR);
      // mkdir's mode is masked by the umask: the modes are set, so QEMU as another user can reach the links.
      if ((await mkdir(root, { recursive: true, mode: PINS_DIR_MODE })) !== undefined) await chmod(root, PINS_DIR_MODE);
      const aside = join(root, `${NEW_PINS_PREFIX}${basename(this.dir)}-${process.pid}`);
      await rm(aside, { recursive: true, force: true });
      await mkdir(aside, { mode: PINS_DIR_MODE });
      await chmod(aside, PINS_DIR_MODE);
      try {
        await symlink(this.sandboxDir, join(aside, SANDBOX_LINK));
        await rename(aside, this.dir);
      } catch (err) {
        await rm(aside, { recursive: true, force: true });
        // There already (this sandbox's shim before, or a stale one that now names a live sandbox again).
        const code = (err as NodeJS.ErrnoException).code;
        if (code !== 'ENOTEMPTY' && code !== 'EEXIST') throw err;
      }
    })();
    this.made.catch(() => (this.made = undefined));
    return this.made;
  }

  /**
   * Pins the image at `from` (the cache's name, or a build's temp file) as
   * layer `key`: a hard link in this sandbox's directory, whose path is
   * returned. A key pinned already keeps its link. null: `from` is gone (not
   * built yet, or collected).
   */
  async pin(from: string, key: string): Promise<string | null> {
    await this.ensure();
    const to = join(this.dir, imageName(key));
    try {
      await link(from, to);
      return to;
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EEXIST') return to;
      if (code !== 'ENOENT') throw err;
    }
    // The cache's name went, but this sandbox holds the image already.
    try {
      await stat(to);
      return to;
    } catch {
      return null;
    }
  }
}

/** Drops a sandbox's pins (its images' link counts fall; the collection may take them). */
export async function releasePins(pinsDir: string): Promise<void> {
  await rm(pinsDir, { recursive: true, force: true });
}
