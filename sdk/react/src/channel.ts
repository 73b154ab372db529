/**
 * `useChannel`: the SDK's one-object-per-name channel, attached while the
 * component is mounted.
 */

import type { Channel } from '@tether/client';
import { useEffect, useMemo } from 'react';

import { useTetherClient } from './context.js';
import { DETACH_GRACE_MS, holdChannel } from './lease.js';

/** Options of {@link useChannel}. */
export interface UseChannelOptions {
  /** Recent messages a fresh attach loads (the client's `rewind` by default). Set before the first attach. */
  rewind?: number;
  /**
   * Receive presence on this channel (`client.channel(name, {presence: true})`).
   * {@link usePresence} turns it on by itself; set it here so the first attach
   * already carries it and no re-attach is needed.
   */
  presence?: boolean;
  /**
   * Keep the channel attached while mounted (default true). `false` for a
   * component that only publishes: it then receives nothing unless another
   * hook (`useMessages`, `usePresence`) attaches it.
   */
  attach?: boolean;
  /** How long after the last user unmounts the channel is detached (ms, default 1000). */
  detachGraceMs?: number;
}

/**
 * The channel `name` of the provider's client, or `null` while there is no
 * client (server render, or before an owned client is created). Every hook
 * that takes a channel accepts `null`, so components need no special case.
 *
 * While at least one mounted component uses a channel through this hook it
 * stays attached (resuming from its last position after reconnects); a
 * second after the last one unmounts it is detached (its view and position
 * are kept, so coming back resumes). The returned object is the same for a
 * name for the client's lifetime, so it is safe in dependency arrays.
 */
export function useChannel(name: string, options: UseChannelOptions = {}): Channel | null {
  const client = useTetherClient();
  const { rewind, presence = false, attach = true, detachGraceMs = DETACH_GRACE_MS } = options;
  // client.channel only looks up or creates the object and records the
  // rewind: nothing is sent, so it is safe during render.
  const channel = useMemo(() => (client ? client.channel(name, rewind !== undefined ? { rewind } : {}) : null), [client, name, rewind]);
  useEffect(() => {
    if (!client || !channel) return undefined;
    if (presence) client.channel(name, { presence: true });
    return attach ? holdChannel(channel, detachGraceMs) : undefined;
  }, [client, channel, name, presence, attach, detachGraceMs]);
  return channel;
}
