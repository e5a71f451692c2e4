// Public surface of the CRI v1 client: the client, its error, the config builders and the message types.
export { CriClient, type CriClientOptions, type CallOptions } from './client';
export { CriError } from './errors';
export {
  podConfig,
  containerConfig,
  DEFAULT_NAMESPACE_OPTIONS,
  BEST_EFFORT_RESOURCES,
  type PodConfigInput,
  type ContainerConfigInput,
} from './config';
export { criProtoPath } from './proto-path';
export type * from './types';
