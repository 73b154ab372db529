/**
 * The conventions of docs/patterns.md, typed: stream status of a streamed
 * response, and the names of the interrupt and handoff messages.
 */

import type { EphemeralMessage, Message, StreamStatus } from './types.js';

/** Message names the conventions use. */
export const MessageNames = {
  /** A request to stop a streaming response: `extras.target` is its serial. The server then marks it `cancelled`. */
  Cancel: 'cancel',
  /** A new instruction for a response: `extras.target` is its serial, `data` the instruction. */
  Steer: 'steer',
  /** An operator claims (`extras.action: "claim"`) or releases (`"release"`) a conversation. Needs `operator`. */
  Handoff: 'handoff',
} as const;

const STATUSES: ReadonlySet<string> = new Set(['streaming', 'complete', 'cancelled', 'error']);

/**
 * The stream status of a message (`extras.stream`): `streaming` while a
 * response is being written, then `complete`, `cancelled` or `error`;
 * undefined for a message that is not a streamed response (or uses a status
 * of its own).
 */
export function streamStatus(message: Pick<Message, 'extras'> | Pick<EphemeralMessage, 'extras'> | undefined): StreamStatus | undefined {
  const s = message?.extras?.['stream'];
  return typeof s === 'string' && STATUSES.has(s) ? (s as StreamStatus) : undefined;
}

/** Whether a stream status is final: the server refuses further appends (40901). */
export function isStreamEnded(status: StreamStatus | undefined): boolean {
  return status === 'complete' || status === 'cancelled' || status === 'error';
}

/** The target serial of a `cancel` or `steer` message, if `message` is one. */
export function targetOf(message: Pick<Message, 'name' | 'extras' | 'data'>): string | undefined {
  if (message.name !== MessageNames.Cancel && message.name !== MessageNames.Steer) return undefined;
  const t = message.extras?.['target'];
  if (typeof t === 'string') return t;
  return message.name === MessageNames.Cancel && typeof message.data === 'string' ? message.data : undefined;
}

/** `claim` or `release` for a `handoff` message, else undefined. */
export function handoffAction(message: Pick<Message, 'name' | 'extras'>): 'claim' | 'release' | undefined {
  if (message.name !== MessageNames.Handoff) return undefined;
  const a = message.extras?.['action'];
  return a === 'claim' || a === 'release' ? a : undefined;
}
