// The bits of the bundle's OCI spec the host side needs: pod grouping
// annotations (CRI) and nothing else; the guest agent interprets the rest.
import { readFileSync } from 'node:fs';
import { isAbsolute, join } from 'node:path';
import { invalidArgument } from '../common/errors';

export const ANN_CONTAINER_TYPE = 'io.kubernetes.cri.container-type';
export const ANN_SANDBOX_ID = 'io.kubernetes.cri.sandbox-id';

export interface BundleSpec {
  raw: string;
  annotations: Record<string, string>;
  /** The sandbox this container belongs to: its own id unless CRI says otherwise. */
  groupId(id: string): string;
  /** True for a CRI app container that joins an existing sandbox's VM. */
  joinsSandbox(): boolean;
  terminal: boolean;
  /** root.path resolved against the bundle (runc's rule): where the rootfs is when containerd mounts nothing. */
  rootPath: string;
  /** root.readonly: the container cannot write to its root filesystem (CRI's pause containers, readOnlyRootFilesystem). */
  readonlyRoot: boolean;
  /** linux.namespaces' network path (a CNI-made namespace under CRI), if any. */
  networkNamespacePath?: string;
  /** A spec with namespaces but no network one: the container (or pod) asked for the node's network. */
  wantsHostNetwork: boolean;
  /** A CRI pod sandbox whose spec has no IPC namespace: the pod asked for the node's (hostIPC). */
  podWantsHostIpc: boolean;
}

export function readBundleSpec(bundle: string): BundleSpec {
  const file = join(bundle, 'config.json');
  let raw: string;
  try {
    raw = readFileSync(file, 'utf8');
  } catch (err) {
    throw invalidArgument(`cannot read OCI spec ${file}: ${(err as Error).message}`);
  }
  let parsed: {
    annotations?: Record<string, string>;
    process?: { terminal?: boolean };
    root?: { path?: string; readonly?: boolean };
    linux?: { namespaces?: Array<{ type?: string; path?: string }> };
  };
  try {
    parsed = JSON.parse(raw);
  } catch (err) {
    throw invalidArgument(`OCI spec ${file} is not valid JSON: ${(err as Error).message}`);
  }
  const annotations = parsed.annotations ?? {};
  const joins = annotations[ANN_CONTAINER_TYPE] === 'container' && !!annotations[ANN_SANDBOX_ID];
  return {
    raw,
    annotations,
    terminal: !!parsed.process?.terminal,
    rootPath: isAbsolute(parsed.root?.path ?? '') ? parsed.root!.path! : join(bundle, parsed.root?.path || 'rootfs'),
    readonlyRoot: parsed.root?.readonly === true,
    networkNamespacePath: parsed.linux?.namespaces?.find((n) => n.type === 'network')?.path || undefined,
    wantsHostNetwork: !!parsed.linux?.namespaces && !parsed.linux.namespaces.some((n) => n.type === 'network'),
    podWantsHostIpc: annotations[ANN_CONTAINER_TYPE] === 'sandbox' && !(parsed.linux?.namespaces ?? []).some((n) => n.type === 'ipc'),
    joinsSandbox: () => joins,
    groupId: (id: string) => (joins ? annotations[ANN_SANDBOX_ID]! : id),
  };
}
