/**
 * `usePresence`: who is on a channel, and this connection's own presence.
 */

import { type Channel, membersStore, type PresenceMember } from '@tether/client';
import { useMemo } from 'react';

import { useExternalStore } from './external.js';
import { noChannel } from './missing.js';

/** The member set before there is one: a constant, so it never looks changed. */
export const NO_MEMBERS: readonly PresenceMember[] = Object.freeze([]);

/** What {@link usePresence} returns. The helpers are stable for a channel. */
export interface PresenceHandle {
  /** The current members, one per connection, ordered by connection id. Immutable; a new array only on change. */
  members: readonly PresenceMember[];
  /** Enters as this connection with `data` (entering again updates); resolves on the server's `ok`. Re-entered by the SDK after a connection that could not be resumed. */
  enter(data?: unknown): Promise<void>;
  /** Changes this connection's data (enters if not present). */
  update(data: unknown): Promise<void>;
  /** Leaves the member set. */
  leave(): Promise<void>;
}

/**
 * The presence of `channel`: its members (re-rendering on enter, update and
 * leave, including changes found when a resync after a reconnect differs
 * from what was shown) and helpers for this connection's own presence.
 * Watching attaches the channel with presence (needs `presence-subscribe`;
 * entering needs `presence`). Empty members and rejecting helpers for a
 * `null` channel; empty members during server rendering and hydration.
 */
export function usePresence(channel: Channel | null | undefined): PresenceHandle {
  const store = useMemo(() => (channel ? membersStore(channel) : null), [channel]);
  const members = useExternalStore(store, NO_MEMBERS);
  const helpers = useMemo(
    () =>
      channel
        ? {
            enter: (data?: unknown) => channel.presence.enter(data),
            update: (data: unknown) => channel.presence.update(data),
            leave: () => channel.presence.leave(),
          }
        : {
            enter: () => noChannel<void>('presence.enter'),
            update: () => noChannel<void>('presence.update'),
            leave: () => noChannel<void>('presence.leave'),
          },
    [channel],
  );
  return useMemo(() => ({ members, ...helpers }), [members, helpers]);
}
