// The agent's log level on the guest kernel command line: nothing for the
// default, read back by the agent (last one wins, junk ignored).
import { describe, expect, it } from 'vitest';
import { AGENT_LOG_PARAM, agentLogKernelParams, agentLogLevelFromCmdline, isLogLevel } from '../../../src/common/log-level';

describe('agent log level on the kernel command line', () => {
  it('adds nothing for info and tern.agent_log=LEVEL otherwise', () => {
    expect(agentLogKernelParams('info')).toEqual([]);
    expect(agentLogKernelParams('debug')).toEqual([`${AGENT_LOG_PARAM}=debug`]);
    expect(agentLogKernelParams('silent')).toEqual(['tern.agent_log=silent']);
  });

  it('is read back from a command line like the guest kernel gets', () => {
    expect(agentLogLevelFromCmdline('console=ttyS0 quiet panic=-1 reboot=t tern.agent_log=debug\n')).toBe('debug');
    expect(agentLogLevelFromCmdline('console=ttyS0 quiet tern.template=1 tern.agent_log=trace')).toBe('trace');
    expect(agentLogLevelFromCmdline('console=ttyS0 quiet')).toBe('info');
    expect(agentLogLevelFromCmdline('console=ttyS0 quiet', 'warn')).toBe('warn');
    expect(agentLogLevelFromCmdline('tern.agent_log=debug tern.agent_log=error')).toBe('error');
    expect(agentLogLevelFromCmdline('tern.agent_log=loud xtern.agent_log=debug tern.agent_logx=debug')).toBe('info');
  });

  it('knows pino levels only', () => {
    expect(isLogLevel('warn')).toBe(true);
    expect(isLogLevel('warning')).toBe(false);
    expect(isLogLevel('')).toBe(false);
  });
});
