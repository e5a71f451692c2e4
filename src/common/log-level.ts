// Log levels, and how the guest agent's level reaches it: the shim puts
// tern.agent_log=LEVEL on the guest kernel command line (nothing for the
// default, "info") and the agent reads /proc/cmdline when it starts. Being on
// the command line, the level is part of a VM template's key: a clone's agent
// keeps the level its template booted with, so a template booted with another
// level is never reused.

/** pino's levels, as the config accepts them. */
export const LOG_LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export function isLogLevel(v: string): v is LogLevel {
  return (LOG_LEVELS as readonly string[]).includes(v);
}

/** The kernel parameter carrying the agent's log level. */
export const AGENT_LOG_PARAM = 'tern.agent_log';
/** The agent's level when the command line says nothing. */
export const AGENT_DEFAULT_LOG_LEVEL: LogLevel = 'info';

/** Kernel parameters for an agent log level: none for the default, so default guests keep their command line (and template key). */
export function agentLogKernelParams(level: LogLevel): string[] {
  return level === AGENT_DEFAULT_LOG_LEVEL ? [] : [`${AGENT_LOG_PARAM}=${level}`];
}

/** The agent's level from a kernel command line (the last tern.agent_log= wins); `fallback` when absent or not a level. */
export function agentLogLevelFromCmdline(cmdline: string, fallback: LogLevel = AGENT_DEFAULT_LOG_LEVEL): LogLevel {
  let level: LogLevel = fallback;
  for (const word of cmdline.split(/\s+/)) {
    if (!word.startsWith(`${AGENT_LOG_PARAM}=`)) continue;
    const v = word.slice(AGENT_LOG_PARAM.length + 1);
    if (isLogLevel(v)) level = v;
  }
  return level;
}
