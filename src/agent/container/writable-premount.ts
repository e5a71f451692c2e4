// The writable slot's filesystem, mounted by a template before it is saved,
// so that a clone's first container does not mount an ext4 on its start path
// (its mount was ~10% of what a clone's QEMU translated on a start: ext4's
// superblock and group checks, its workqueues and threads, the block layer).
//
// The template boots with a file in its writable slot (an empty ext4 the host
// made, with the size of a default container limit). Its guest mounts it,
// makes the overlay's upper and work directories, and remounts it read-only,
// which writes everything out: from then on the guest caches nothing of it
// that the file does not hold. The host keeps that file with the template;
// a clone's container whose writable layer is a copy of it (Layer.premounted)
// takes the mount over: remounted writable, then moved to its place. The
// guest's cached superblock, bitmaps and directories are those of its disk,
// byte for byte.
//
// Any other file in the slot is mounted anew: the read-only mount is dropped
// first (a read-only ext4 writes nothing when it goes, so the new file is
// left as the host made it).
import { promises as fs } from 'node:fs';
import path from 'node:path';
import { failedPrecondition } from '../../common/errors.js';
import type { Mounter } from './rootfs.js';

/** ext4's superblock magic (0xEF53, little-endian) sits 1080 bytes into the disk. */
const EXT4_MAGIC_OFFSET = 1080;
const EXT4_MAGIC = 0xef53;

/** True when the block device (or file) holds an ext4 (or ext2/3) superblock. */
export async function holdsExt4(device: string): Promise<boolean> {
  const fh = await fs.open(device, 'r');
  try {
    const b = Buffer.alloc(2);
    const { bytesRead } = await fh.read(b, 0, 2, EXT4_MAGIC_OFFSET);
    return bytesRead === 2 && b.readUInt16LE(0) === EXT4_MAGIC;
  } finally {
    await fh.close();
  }
}

export class WritablePremount {
  private held?: { device: string; dir: string };

  constructor(
    private readonly mounter: Mounter,
    /** Where the filesystem is kept mounted until a container takes it. */
    readonly dir: string,
    /** The mount options of a writable layer (rootfs.ts WRITABLE_EXT4_OPTIONS). */
    private readonly options: string,
  ) {}

  /** A mount is held for a container to take. */
  get available(): boolean {
    return this.held !== undefined;
  }

  /** The device whose filesystem is held, if any. */
  get device(): string | undefined {
    return this.held?.device;
  }

  /**
   * In a template, before it is saved: mounts `device`'s ext4, makes the
   * overlay's directories (as a container's would be) and leaves it mounted
   * read-only. Returns false, mounting nothing, when the device holds no ext4
   * (a host that puts no file in the slot).
   */
  async prepare(device: string): Promise<boolean> {
    if (this.held) throw failedPrecondition(`writable slot: ${this.held.device} is premounted already`);
    if (!(await holdsExt4(device))) return false;
    await fs.mkdir(this.dir, { recursive: true });
    await this.mounter.mount(device, this.dir, 'ext4', { data: this.options });
    try {
      await fs.chmod(this.dir, 0o755);
      await fs.mkdir(path.join(this.dir, 'upper'), { mode: 0o755 });
      await fs.mkdir(path.join(this.dir, 'work'), { mode: 0o700 });
      await this.mounter.remount(this.dir, { readOnly: true, data: this.options });
    } catch (err) {
      await this.mounter.umount(this.dir).catch(() => this.mounter.umount(this.dir, { lazy: true }));
      throw err;
    }
    this.held = { device, dir: this.dir };
    return true;
  }

  /**
   * Gives the held filesystem to a container: made writable and moved to
   * `target` (where it is then unmounted as any container's). The disk in
   * the slot must be a copy of the template's; `device` must be the one held.
   */
  async take(device: string, target: string): Promise<void> {
    const held = this.held;
    if (!held || held.device !== device) {
      throw failedPrecondition(`writable layer on ${device}: a premounted one was asked for, but the guest holds ${held ? `${held.device}'s` : 'none'}`);
    }
    this.held = undefined;
    try {
      await this.mounter.remount(held.dir, { readOnly: false, data: this.options });
      await this.mounter.move(held.dir, target);
    } catch (err) {
      // Whatever state it is in, nothing else may use it: detached.
      await this.mounter.umount(held.dir, { lazy: true }).catch(() => undefined);
      throw err;
    }
    await fs.rmdir(held.dir).catch(() => undefined);
  }

  /** Before `device` is mounted anew: drops the held read-only mount of it, if any (which writes nothing to the device). */
  async release(device: string): Promise<void> {
    const held = this.held;
    if (!held || held.device !== device) return;
    this.held = undefined;
    await this.mounter.umount(held.dir);
    await fs.rmdir(held.dir).catch(() => undefined);
  }
}
