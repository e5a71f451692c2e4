// The runtime options containerd passes on Create (CRI: the handler's
// `options` in containerd's config, as runtimeoptions.v1.Options): tern reads
// its config file's path from them.
import { anyUnpack } from '../common/proto';

export const RUNTIME_OPTIONS_TYPE = 'runtimeoptions.v1.Options';

/** The config file the options name, or undefined (no options, another type, no path). */
export function configPathOf(options: { type_url: string; value: Uint8Array } | null | undefined): string | undefined {
  if (!options?.type_url) return undefined;
  const unpacked = anyUnpack<{ config_path?: string }>(options);
  if (unpacked?.typeName !== RUNTIME_OPTIONS_TYPE) return undefined;
  return unpacked.message.config_path || undefined;
}
