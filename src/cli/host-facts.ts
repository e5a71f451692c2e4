// Gathers the real facts `tern check` judges: reads /proc and /sys, looks for
// files and runs `qemu --version`, `qemu -device help`, `containerd --version`
// (each with a deadline). The verdicts are in checks.ts.
import { accessSync, constants, existsSync, readFileSync, statSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { defaultConfig, type TernConfig } from '../common/config';
import { messageOf } from '../common/errors';
import { resolveRunAs } from '../common/run-as';
import { detectAccel, HOST_ACCEL_PATHS } from '../hypervisor/accel';
import { SHIM_BINARY, type FileFact, type HostFacts } from './checks';
import { effectiveConfig } from './config-view';
import { findShim, runCommand, which } from './exec';

function readText(path: string): string | null {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return null;
  }
}

function fileFact(path: string): FileFact {
  try {
    const st = statSync(path);
    return { path, exists: st.isFile(), size: st.size };
  } catch {
    return { path, exists: false };
  }
}

function devState(path: string): 'usable' | 'present' | 'absent' {
  if (!existsSync(path)) return 'absent';
  try {
    accessSync(path, constants.R_OK | constants.W_OK);
    return 'usable';
  } catch {
    return 'present';
  }
}

export function configPathOf(explicit: string | undefined): string {
  return explicit || process.env.TERN_CONFIG || '/etc/tern/config.toml';
}

export async function gatherHostFacts(configFlag: string | undefined): Promise<HostFacts> {
  let configPath = configPathOf(configFlag);
  let configFileRead = false;
  let cfg: TernConfig;
  let configError: string | undefined;
  try {
    const eff = effectiveConfig(configFlag);
    cfg = eff.config;
    configPath = eff.path;
    configFileRead = eff.fileRead;
  } catch (err) {
    cfg = defaultConfig();
    configError = messageOf(err);
  }
  const h = cfg.hypervisor;
  const qemuPath = which(h.binary);
  const [qemuVersion, qemuDeviceHelp, containerdVersion] = await Promise.all([
    qemuPath ? runCommand(qemuPath, ['--version']) : Promise.resolve(null),
    qemuPath ? runCommand(qemuPath, ['-nodefaults', '-machine', 'none', '-device', 'help']) : Promise.resolve(null),
    runCommand('containerd', ['--version']),
  ]);
  const manifestPath = join(dirname(h.kernel), 'manifest.json');
  let manifestText: string | null = null;
  let manifestError: string | undefined;
  try {
    manifestText = readFileSync(manifestPath, 'utf8');
  } catch (err) {
    manifestError = (err as NodeJS.ErrnoException).code ?? messageOf(err);
  }
  return {
    configError,
    configPath,
    configFileRead,
    cpuinfo: readText(HOST_ACCEL_PATHS.cpuinfo),
    pvmModule: existsSync(HOST_ACCEL_PATHS.pvmModule),
    devKvm: devState(HOST_ACCEL_PATHS.devKvm),
    vhostVsock: existsSync('/dev/vhost-vsock'),
    forcedAccel: h.accel,
    accel: detectAccel(h.accel),
    qemuBinary: h.binary,
    qemuPath,
    qemuVersion,
    qemuDeviceHelp,
    kernel: fileFact(h.kernel),
    initrd: fileFact(h.initrd),
    image: fileFact(h.image),
    manifest: { path: manifestPath, text: manifestText, error: manifestError },
    containerdVersion,
    shimPath: findShim(SHIM_BINARY),
    mountinfo: readText('/proc/self/mountinfo'),
    meminfo: readText('/proc/meminfo'),
    vmMemoryMiB: h.memoryMiB,
    runAs: runAsFact(h.runAs),
  };
}

function runAsFact(setting: string): HostFacts['runAs'] {
  try {
    return { setting, ...resolveRunAs(setting) };
  } catch (err) {
    return { setting, error: messageOf(err) };
  }
}
