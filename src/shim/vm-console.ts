// The end of a VM's console log (the guest kernel's and agent's lines), quoted
// for an error message that says why a boot failed.
import { readFile } from 'node:fs/promises';
import { join } from 'node:path';

export async function consoleTail(runDir: string, chars = 1500): Promise<string> {
  try {
    const text = await readFile(join(runDir, 'console.log'), 'utf8');
    return JSON.stringify(text.slice(-chars));
  } catch {
    return '(no console log)';
  }
}
