/**
 * One place where the SDK's framework-neutral stores meet
 * `useSyncExternalStore`, with what every hook needs on top: a missing store
 * (no client or channel yet) and a server snapshot for SSR and hydration.
 */

import type { ExternalStore } from '@tether/client';
import { useSyncExternalStore } from 'react';

/** Subscribing to nothing: used while there is no store, so the hook order never changes. */
const subscribeToNothing = (): (() => void) => () => undefined;

/**
 * Reads `store` with `useSyncExternalStore`, or `fallback` when `store` is
 * `null`. `fallback` is also the server snapshot: it is what the server
 * renders and what the first (hydrating) client render must match, since
 * the server never holds a live view.
 *
 * The store must be memoised by the caller (one object per channel or
 * client): a new `subscribe` on every render would resubscribe every time.
 * `fallback` must be a constant, so "nothing changed" is the same reference.
 */
export function useExternalStore<T>(store: ExternalStore<T> | null, fallback: T): T {
  const subscribe = store ? store.subscribe : subscribeToNothing;
  const getSnapshot = store ? store.getSnapshot : () => fallback;
  return useSyncExternalStore(subscribe, getSnapshot, () => fallback);
}
