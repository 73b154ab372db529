/**
 * @tether/client: the browser and Node client for Tether.
 *
 * Start with {@link TetherClient}; bind a UI to `channel.onMessages` and
 * `channel.presence.onMembers`.
 */

export { TetherClient, type ClientOptions, type ClientEvents } from './client.js';
export {
  Channel,
  type AttachResult,
  type ChannelEvents,
  type ChannelOptions,
  type ChannelState,
  type EphemeralListener,
  type EventInfo,
  type MessageListener,
} from './channel.js';
export { ChannelPresence, type PresenceEvents, type PresenceListener } from './presence.js';
export { handoffAction, isStreamEnded, MessageNames, streamStatus, targetOf } from './conventions.js';
export { decodeJwtTimes } from './auth.js';
export { connectionStateStore, type ExternalStore, membersStore, messagesStore } from './stores.js';
export { ErrorCodes, TetherError } from './errors.js';
export { View, type FoldResult } from './view.js';
export { MemoryStorage } from './storage.js';
export { RestClient } from './rest.js';
export {
  TetherChatTransport,
  type BridgeOptions,
  type ChatTransportOptions,
  type TetherChatTransportOptions,
} from './chat-transport.js';
export { ResponseChunker, responseStream } from './ui-stream.js';
export { awaitResponse, responseTo } from './await-response.js';
export { textOf, toModelMessages, type ModelMessage } from './chat-prompt.js';
export type { ChatMessageLike, ChatRequestOptionsLike, UIChunk } from './ai-types.js';
export type { BackoffOptions } from './util.js';
export type * from './types.js';
