// The shim process's control requests (shim-daemon.ts): what the native
// launcher sends (helpers/tern-shim-launch.c), read back exactly, and what is
// not a request refused with a message naming why.
import { describe, expect, it } from 'vitest';
import { parseRequest } from '../../../src/shim/shim-daemon';

describe('shim control request', () => {
  it('is the working directory, then the arguments, each NUL-terminated', () => {
    const req = Buffer.from(['/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1', '-namespace', 'k8s.io', '-id', 'c1', 'start', ''].join('\0'));
    expect(parseRequest(req)).toEqual({ cwd: '/run/containerd/io.containerd.runtime.v2.task/k8s.io/c1', argv: ['-namespace', 'k8s.io', '-id', 'c1', 'start'] });
    // An empty argument stays one (containerd may pass -publish-binary "").
    expect(parseRequest(Buffer.from('/b\0-publish-binary\0\0start\0')).argv).toEqual(['-publish-binary', '', 'start']);
  });

  it('refuses a request cut short, without a directory or without arguments', () => {
    expect(() => parseRequest(Buffer.from('/b\0start'))).toThrow(/not NUL-terminated/);
    expect(() => parseRequest(Buffer.from(''))).toThrow(/not NUL-terminated/);
    expect(() => parseRequest(Buffer.from('\0start\0'))).toThrow(/no working directory/);
    expect(() => parseRequest(Buffer.from('/b\0'))).toThrow(/no arguments/);
  });
});
