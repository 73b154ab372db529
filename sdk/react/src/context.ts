/**
 * The React context that carries the Tether client down the tree, and the
 * hook that reads it. Kept apart from the provider so hooks can import it
 * without pulling in client creation.
 */

import type { TetherClient } from '@tether/client';
import { createContext, useContext } from 'react';

/**
 * What a {@link TetherProvider} shares. `client` is `null` while there is
 * none yet: during a server render, and on the client before the provider's
 * effect has created the client it owns. Hooks treat `null` as "nothing
 * yet" (empty snapshots) rather than failing, so the same tree renders on
 * the server and the client.
 */
export interface TetherContextValue {
  /** The client, or `null` before one exists (server render, first client render). */
  client: TetherClient | null;
}

/**
 * The context itself. Its default is `undefined`, distinct from "a provider
 * with no client yet", so a hook used outside any provider can say so.
 */
export const TetherContext = createContext<TetherContextValue | undefined>(undefined);

/**
 * The client of the nearest {@link TetherProvider}, or `null` while it has
 * none (server render, or before the owned client is created). For calls the
 * hooks do not cover (`client.rest`, `ping`, `connectionId`).
 *
 * @throws Error when used outside a `TetherProvider`: that is a bug in the
 * tree, and failing loudly beats rendering an eternally empty view.
 */
export function useTetherClient(): TetherClient | null {
  const value = useContext(TetherContext);
  if (value === undefined) throw new Error('@tether/react: hooks must be used inside a <TetherProvider>');
  return value.client;
}
