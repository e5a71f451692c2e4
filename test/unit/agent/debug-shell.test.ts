import { describe, expect, it } from 'vitest';
import { debugShellPlan } from '../../../src/agent/debug-shell';
import { renderPlan } from '../../../src/agent/container/plan';

describe('debugShellPlan', () => {
  it("is a root shell on a pty in the guest's own namespaces and root", () => {
    const text = renderPlan(debugShellPlan());
    expect(text).toContain('mode\texec\n');
    expect(text).toContain('user\t0\t0\n');
    expect(text).toContain('arg\t/bin/sh\n');
    expect(text).toContain('terminal\n');
    expect(text).not.toMatch(/^(setns|unshare|exec_root|root|cgroup|seccomp|caps|mount)\t/m);
  });
});
