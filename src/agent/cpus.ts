// Hot-plugged vCPUs arrive offline (there is no udev in the guest to online
// them): the host asks the agent to online every offline CPU after adding
// some. Counts what is online from /sys/devices/system/cpu/online ("0-1,3").
import { readdir, readFile, writeFile } from 'node:fs/promises';

const CPU_DIR = '/sys/devices/system/cpu';

/** Number of CPUs in a kernel cpu list such as "0-3,5". */
export function countCpuList(list: string): number {
  let n = 0;
  for (const part of list.trim().split(',')) {
    if (!part) continue;
    const [a, b] = part.split('-').map(Number);
    if (!Number.isInteger(a)) continue;
    n += b === undefined ? 1 : Number.isInteger(b) && b >= a! ? b - a! + 1 : 0;
  }
  return n;
}

/** Onlines every offline CPU under dir; returns how many are online afterwards. */
export async function onlineAllCpus(dir = CPU_DIR): Promise<number> {
  for (const name of await readdir(dir)) {
    if (!/^cpu\d+$/.test(name)) continue;
    const file = `${dir}/${name}/online`;
    const state = await readFile(file, 'utf8').catch(() => undefined); // cpu0 often has no such file
    if (state?.trim() === '0') await writeFile(file, '1');
  }
  return countCpuList(await readFile(`${dir}/online`, 'utf8'));
}
