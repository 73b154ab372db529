/**
 * @tether/client: the browser and Node client for Tether.
 *
 * Start with {@link TetherClient}; bind a UI to `channel.onMessages`.
 */

export { TetherClient, type ClientOptions, type ClientEvents } from './client.js';
export {
  Channel,
  type AttachResult,
  type ChannelEvents,
  type ChannelState,
  type EventInfo,
  type MessageListener,
} from './channel.js';
export { ErrorCodes, TetherError } from './errors.js';
export { View, type FoldResult } from './view.js';
export { MemoryStorage } from './storage.js';
export { RestClient } from './rest.js';
export type { BackoffOptions } from './util.js';
export type * from './types.js';
