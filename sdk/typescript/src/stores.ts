/**
 * Framework-neutral observable stores in the shape React's
 * `useSyncExternalStore` (and Svelte, Solid, Vue adapters) take:
 * `subscribe(onChange)` returns an unsubscribe, `getSnapshot()` returns an
 * immutable value whose identity changes only when it changes. They make a
 * UI binding a one-liner without this package depending on any framework.
 */

import type { Channel } from './channel.js';
import type { TetherClient } from './client.js';
import type { ConnectionState, Message, PresenceMember } from './types.js';

/** `subscribe` + `getSnapshot`, as `useSyncExternalStore` expects. */
export interface ExternalStore<T> {
  subscribe(onChange: () => void): () => void;
  getSnapshot(): T;
}

/** The conversation view of a channel. Subscribing attaches the channel. */
export function messagesStore(channel: Channel): ExternalStore<readonly Message[]> {
  return {
    subscribe: (onChange) => channel.onMessages(() => onChange()),
    getSnapshot: () => channel.messages(),
  };
}

/** The presence members of a channel. Subscribing attaches the channel with presence. */
export function membersStore(channel: Channel): ExternalStore<readonly PresenceMember[]> {
  return {
    subscribe: (onChange) => channel.presence.onMembers(() => onChange()),
    getSnapshot: () => channel.presence.members(),
  };
}

/** The client's connection state (for an "offline" banner). */
export function connectionStateStore(client: TetherClient): ExternalStore<ConnectionState> {
  return {
    subscribe: (onChange) => client.on('state', () => onChange()),
    getSnapshot: () => client.state,
  };
}
