/**
 * Attachment by reference count: a channel used by mounted components stays
 * attached, and is detached a moment after the last of them unmounts. The
 * moment matters: React's Strict Mode unmounts and remounts every effect
 * once, and a route change unmounts one page before the next mounts; both
 * would otherwise detach and re-attach for nothing.
 */

import type { Channel } from '@tether/client';

/** How long a channel nobody holds stays attached before it is detached (ms). */
export const DETACH_GRACE_MS = 1000;

/** Holders per channel. A WeakMap, so a forgotten channel (closed client) is not kept alive. */
const holders = new WeakMap<Channel, number>();

/**
 * Marks `channel` as used: attaches it (a no-op if attached) and returns the
 * release function. Releasing twice counts once. After the last release the
 * channel is detached once `graceMs` has passed with nobody holding it;
 * its view and position are kept by the SDK, so a later hold resumes.
 */
export function holdChannel(channel: Channel, graceMs: number = DETACH_GRACE_MS): () => void {
  holders.set(channel, (holders.get(channel) ?? 0) + 1);
  channel.attach().catch(() => {
    /* the SDK reports attach failures through the channel's 'error' event */
  });
  let released = false;
  return () => {
    if (released) return;
    released = true;
    const left = (holders.get(channel) ?? 1) - 1;
    holders.set(channel, left);
    if (left > 0) return;
    setTimeout(() => {
      if ((holders.get(channel) ?? 0) === 0) channel.detach().catch(() => undefined);
    }, graceMs);
  };
}

/** How many mounted users hold `channel` (for tests and debugging). */
export function channelHolders(channel: Channel): number {
  return holders.get(channel) ?? 0;
}
