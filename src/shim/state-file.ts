// The shim's small state files in the sandbox directory (sandbox.json,
// containers.json): written whole; the teardown ledger (teardown-ledger.ts)
// is appended to, with the same errors. A failure names the file;
// a full disk (the state directory is a tmpfs like /run on most nodes) is
// ResourceExhausted and says which setting points there.
import { writeFile } from 'node:fs/promises';
import { TernError } from '../common/errors';

export async function writeStateFile(path: string, data: string): Promise<void> {
  try {
    await writeFile(path, data);
  } catch (err) {
    throw stateFileError('write', path, err);
  }
}

export function stateFileError(op: string, path: string, err: unknown): TernError {
  const e = err as NodeJS.ErrnoException;
  if (e.code === 'ENOSPC' || e.code === 'EDQUOT') {
    return new TernError('ResourceExhausted', `${op} ${path}: no space left on device (tern's state directory, runtime.state_dir, is full)`, { cause: err });
  }
  return new TernError('Internal', `${op} ${path}: ${e.message ?? String(err)}`, { cause: err });
}
