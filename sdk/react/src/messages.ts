/**
 * `useMessages`: the folded conversation view the SDK keeps for a channel.
 */

import { type Channel, type Message, messagesStore } from '@tether/client';
import { useMemo } from 'react';

import { useExternalStore } from './external.js';

/** The view before there is one (no channel, server render, hydration): one constant, so it never looks changed. */
export const NO_MESSAGES: readonly Message[] = Object.freeze([]);

/**
 * The current messages of `channel`, in channel order, with appends folded
 * in and updates and deletes applied: the whole conversation, as a chat UI
 * shows it. The component re-renders when the view changes (at most once per
 * batch of events) and only then: the array is the SDK's immutable
 * snapshot, the same reference until something changes, so it can go
 * straight into `useMemo` dependencies or `React.memo` props.
 *
 * Subscribing attaches the channel if needed. Returns an empty array for a
 * `null` channel and during server rendering and hydration.
 */
export function useMessages(channel: Channel | null | undefined): readonly Message[] {
  const store = useMemo(() => (channel ? messagesStore(channel) : null), [channel]);
  return useExternalStore(store, NO_MESSAGES);
}
