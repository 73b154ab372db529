/**
 * The error a hook's helper rejects with when there is no channel yet, so
 * a click during hydration fails visibly instead of silently.
 */

import { ErrorCodes, TetherError } from '@tether/client';

/** A rejected promise saying the channel does not exist yet (server render, or before the client is created). */
export function noChannel<T>(what: string): Promise<T> {
  return Promise.reject(new TetherError(ErrorCodes.NotAttached, `${what}: no channel yet (the client is created after mount)`));
}
