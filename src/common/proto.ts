// Protobuf types for every .proto under proto/ (containerd task v2, events,
// types, runtime options, tern agent), loaded from the descriptors that
// scripts/gen-proto.mjs compiles. Field names stay snake_case as in the .proto.
// decode() gives plain objects: int64 as number, bytes as Buffer, enums as
// numbers, defaults filled in.
import protobuf from 'protobufjs';
import descriptors from './proto-descriptors.json';

let root: protobuf.Root | undefined;
const types = new Map<string, protobuf.Type>();

export function protoRoot(): protobuf.Root {
  if (!root) root = protobuf.Root.fromJSON(descriptors as protobuf.INamespace);
  return root;
}

/** The message type with this full name (e.g. `containerd.task.v2.CreateTaskRequest`). */
export function protoType(fullName: string): protobuf.Type {
  const cached = types.get(fullName);
  if (cached) return cached;
  const found = exactLookup(fullName);
  if (!found) {
    throw new Error(`unknown protobuf message type "${fullName}" (not in proto/; run node scripts/gen-proto.mjs after adding it)`);
  }
  types.set(fullName, found);
  return found;
}

// Walk the namespace tree by the exact dotted name (Namespace.lookup would
// also match a bare name anywhere in the tree, which is not what we want).
function exactLookup(fullName: string): protobuf.Type | undefined {
  const parts = (fullName.startsWith('.') ? fullName.slice(1) : fullName).split('.');
  let node: protobuf.ReflectionObject | null = protoRoot();
  for (const part of parts) {
    if (!(node instanceof protobuf.Namespace) || part === '') return undefined;
    node = node.get(part);
  }
  return node instanceof protobuf.Type ? node : undefined;
}

export const decodeOptions: protobuf.IConversionOptions = {
  longs: Number,
  enums: Number,
  bytes: Buffer,
  defaults: true,
  arrays: true,
};

/** Encode a plain object (snake_case fields) as the named message. Throws on invalid field values. */
export function encode(typeName: string, obj: object): Uint8Array {
  const type = protoType(typeName);
  const err = type.verify(obj);
  if (err) throw new Error(`cannot encode ${typeName}: ${err}`);
  return type.encode(type.fromObject(obj as Record<string, unknown>)).finish();
}

/** Decode bytes of the named message into a plain object (see decodeOptions). */
export function decode<T = Record<string, unknown>>(typeName: string, bytes: Uint8Array): T {
  const type = protoType(typeName);
  // A plain Reader bounds-checks string lengths (the Buffer reader's fast path does not).
  return type.toObject(type.decode(new protobuf.Reader(bytes)), decodeOptions) as T;
}

export interface AnyMessage {
  type_url: string;
  value: Uint8Array;
}

/** Build a google.protobuf.Any holding `obj` encoded as `typeName`, labelled `typeUrl`. */
export function anyPack(typeUrl: string, typeName: string, obj: object): AnyMessage {
  return { type_url: typeUrl, value: encode(typeName, obj) };
}

/**
 * Decode an Any whose type_url names a message known here (bare full name as
 * containerd's typeurl writes it, or with a `type.googleapis.com/` style prefix).
 * Returns undefined for type_urls that are not protobuf messages known here.
 */
export function anyUnpack<T = Record<string, unknown>>(any: { type_url?: string; value?: Uint8Array }): { typeName: string; message: T } | undefined {
  const url = any.type_url ?? '';
  const typeName = url.slice(url.lastIndexOf('/') + 1);
  if (!typeName || !exactLookup(typeName)) return undefined;
  return { typeName, message: decode<T>(typeName, any.value ?? new Uint8Array(0)) };
}
