/**
 * `useConnectionState`: the client's connection state, for an "offline"
 * banner or a reconnecting indicator.
 */

import { type ConnectionState, connectionStateStore } from '@tether/client';
import { useMemo } from 'react';

import { useTetherClient } from './context.js';
import { useExternalStore } from './external.js';

/**
 * The provider's client's connection state: `initialized`, `connecting`,
 * `connected`, `disconnected` (reconnecting with backoff), `closed` or
 * `failed`. Re-renders on every change. `initialized` while there is no
 * client and during server rendering and hydration.
 */
export function useConnectionState(): ConnectionState {
  const client = useTetherClient();
  const store = useMemo(() => (client ? connectionStateStore(client) : null), [client]);
  return useExternalStore<ConnectionState>(store, 'initialized');
}
