// ttrpc (containerd's lightweight RPC) for Node, standalone: nothing else in
// src/ is imported. Flow: bytes -> FrameDecoder (10-byte header, 4 MiB limit)
// -> frames -> Request/Response envelopes (messages.ts) -> TtrpcServer runs
// the registered handler and answers on the same stream id, or TtrpcClient
// settles the call waiting on that id. Errors travel as a status code
// (status.ts); statusFromError is the single mapping from thrown values.
export { encodeFrame, FrameDecoder, FrameType, HEADER_LENGTH, MAX_MESSAGE_LENGTH } from './frame-codec';
export type { DecodedFrame, Frame, FrameHeader, OversizeFrame } from './frame-codec';
export { Code, codeName, statusFromError, TtrpcError } from './status';
export type { CodeName, Status } from './status';
export { decodeRequest, decodeResponse, encodeRequest, encodeResponse } from './messages';
export type { KeyValue, RequestMessage, ResponseMessage, StatusMessage } from './messages';
export { DEFAULT_MAX_IN_FLIGHT, ServerConnection, TtrpcServer } from './server';
export type { CallContext, Handler, ServerLog, ServerOptions } from './server';
export { TtrpcClient } from './client';
export type { CallOptions, ClientOptions } from './client';
