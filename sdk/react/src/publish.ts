/**
 * `usePublish`: publish and mutate through a channel, with the outcome of
 * the latest call kept as state for the UI (a sending indicator, an error).
 */

import type { Ack, AppendOptions, Channel, DeleteOptions, NewMessage, Serial, TetherError, UpdatePatch } from '@tether/client';
import { useMemo, useState } from 'react';

import { noChannel } from './missing.js';

/** What {@link usePublish} returns. The functions are stable for a channel. */
export interface PublishHandle {
  /** Publishes a message; resolves with the server's ack (`{serial, versionSerial, duplicate}`). Exactly once across reconnects. */
  publish(message: NewMessage): Promise<Ack>;
  /** Appends a fragment to message `serial` (pipelined: no need to await each one). */
  append(serial: Serial, data: string, options?: AppendOptions): Promise<Ack>;
  /** Makes a new version of message `serial`. */
  update(serial: Serial, patch: UpdatePatch): Promise<Ack>;
  /** Deletes message `serial` (a tombstone keeps its place). `delete` is a reserved word, hence the name. */
  remove(serial: Serial, options?: DeleteOptions): Promise<Ack>;
  /** Calls made through this hook that the server has not answered yet. */
  pending: number;
  /** The ack of the most recent call that succeeded. */
  lastAck: Ack | undefined;
  /** The error of the most recent call that failed, cleared by the next success. */
  error: TetherError | undefined;
}

interface Outcome {
  pending: number;
  lastAck: Ack | undefined;
  error: TetherError | undefined;
}

const START: Outcome = { pending: 0, lastAck: undefined, error: undefined };

/**
 * Publish, append, update and delete on `channel`. Each function returns the
 * SDK's promise (the ack, or a `TetherError`), so a caller can await it;
 * the hook also keeps `pending`, `lastAck` and `error` as state so a
 * component can show "sending…" or a failure without its own bookkeeping.
 * With a `null` channel the functions reject (`NotAttached`).
 */
export function usePublish(channel: Channel | null | undefined): PublishHandle {
  const [outcome, setOutcome] = useState<Outcome>(START);
  const ops = useMemo(() => {
    const track = (call: () => Promise<Ack>): Promise<Ack> => {
      setOutcome((o) => ({ ...o, pending: o.pending + 1 }));
      const p = call();
      p.then(
        (ack) => setOutcome((o) => ({ pending: o.pending - 1, lastAck: ack, error: undefined })),
        (error: TetherError) => setOutcome((o) => ({ ...o, pending: o.pending - 1, error })),
      );
      return p;
    };
    if (!channel) {
      const missing = (what: string) => () => track(() => noChannel<Ack>(what));
      return { publish: missing('publish'), append: missing('append'), update: missing('update'), remove: missing('delete') };
    }
    return {
      publish: (message: NewMessage) => track(() => channel.publish(message)),
      append: (serial: Serial, data: string, options?: AppendOptions) => track(() => channel.append(serial, data, options)),
      update: (serial: Serial, patch: UpdatePatch) => track(() => channel.update(serial, patch)),
      remove: (serial: Serial, options?: DeleteOptions) => track(() => channel.delete(serial, options)),
    };
  }, [channel]);
  return useMemo(() => ({ ...ops, ...outcome }), [ops, outcome]);
}
