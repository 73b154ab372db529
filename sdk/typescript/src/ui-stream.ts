/**
 * One streamed response on a channel, read as a Vercel AI SDK UI message
 * stream (`ReadableStream<UIMessageChunk>`).
 *
 * The chunks are the same ones the server's `GET /channels/{ch}/aisdk/stream`
 * sends (crates/tether-server/src/doors/aisdk.rs): `start` with the Tether
 * message's `id`, `text-start`, the text so far as one `text-delta`, each
 * later growth as a `text-delta`, then `text-end` and `finish`, `abort`
 * (cancelled or deleted) or `error`. So a chat can move between this
 * transport and `DefaultChatTransport` pointed at the endpoint and see the
 * same message. Nothing here needs the `ai` package (see ai-types.ts).
 */

import type { UIChunk } from './ai-types.js';
import type { Channel } from './channel.js';
import { streamStatus } from './conventions.js';
import type { Message, Serial } from './types.js';

/**
 * Turns successive snapshots of one response (whole messages, from the
 * folded view or from REST, in any order) into the chunks that bring a
 * reader from what it has seen to the newest snapshot. Stale snapshots
 * (version not newer) produce nothing, which is what lets the view and a
 * REST read race without repeating text.
 */
export class ResponseChunker {
  private text = '';
  private version: Serial | undefined;
  private started = false;
  private done = false;
  private readonly textId: string;

  /** `serial`: the response's serial (the text part's id is derived from it, as the server does). */
  constructor(readonly serial: Serial) {
    this.textId = `text-${serial}`;
  }

  /** Whether the response has ended (the last chunk was `finish`, `abort` or `error`). */
  get ended(): boolean {
    return this.done;
  }

  /** The text sent so far. */
  get sentText(): string {
    return this.text;
  }

  /** The chunks for `message`, a snapshot of the response; none if it is not newer than the last one. */
  next(message: Message): UIChunk[] {
    if (this.done || message.serial !== this.serial) return [];
    if (this.version !== undefined && message.version.serial <= this.version) return [];
    this.version = message.version.serial;
    const id = this.textId;
    const out: UIChunk[] = [];
    if (!this.started) {
      this.started = true;
      out.push({ type: 'start', messageId: message.id }, { type: 'text-start', id });
    }
    if (message.action === 'delete') return this.end(out, { type: 'abort', reason: 'deleted' });
    const whole = typeof message.data === 'string' ? message.data : '';
    if (!whole.startsWith(this.text)) {
      // A UI message stream can only add text; a rewrite cannot be shown.
      return this.end(out, { type: 'error', errorText: 'the response was rewritten' });
    }
    if (whole.length > this.text.length) {
      out.push({ type: 'text-delta', id, delta: whole.slice(this.text.length) });
      this.text = whole;
    }
    const status = streamStatus(message);
    if (status === 'streaming') return out;
    if (status === 'cancelled') return this.end(out, { type: 'abort', reason: 'cancelled' });
    if (status === 'error') return this.end(out, { type: 'error', errorText: errorText(message) });
    // `complete`, or extras without a status: done rather than waiting forever (the server's rule).
    return this.end(out, { type: 'finish', finishReason: 'stop' });
  }

  private end(out: UIChunk[], last: UIChunk): UIChunk[] {
    this.done = true;
    out.push({ type: 'text-end', id: this.textId }, last);
    return out;
  }
}

/** `extras.error.message` of a failed response (the bridge's shape), or a generic text. */
function errorText(message: Message): string {
  const error = message.extras?.['error'];
  const text = typeof error === 'object' && error !== null ? (error as { message?: unknown }).message : error;
  return typeof text === 'string' && text !== '' ? text : 'the response failed';
}

/**
 * A UI message stream of the response `serial` on `channel`, from its
 * beginning to its end. `serial` may be a promise (an agent's response that
 * does not exist yet); if it rejects, the stream errors with that reason.
 *
 * It reads the channel's folded view (`onMessages`, which attaches the
 * channel over the client's one WebSocket, resumes across drops and renews
 * tokens) and, once, the message over REST, so a response that ended before
 * the view had it, or that is older than the attach's rewind, still arrives
 * whole. Cancelling the stream stops reading; it does not cancel the
 * response (that is the transport's `abortSignal`).
 */
export function responseStream(channel: Channel, serial: Serial | Promise<Serial>): ReadableStream<UIChunk> {
  let stop: (() => void) | undefined;
  let closed = false;
  return new ReadableStream<UIChunk>({
    start(controller) {
      const finish = () => {
        closed = true;
        stop?.();
        controller.close();
      };
      const fail = (err: unknown) => {
        if (closed) return;
        closed = true;
        stop?.();
        controller.error(err);
      };
      Promise.resolve(serial).then((s) => {
        if (closed) return;
        const chunker = new ResponseChunker(s);
        const push = (message: Message | undefined) => {
          if (closed || !message) return;
          for (const chunk of chunker.next(message)) controller.enqueue(chunk);
          if (chunker.ended) finish();
        };
        stop = channel.onMessages((messages) => push(find(messages, s)));
        // onMessages calls back at once: the response may have ended already.
        if (closed) stop();
        channel.message(s).then(push, (err: unknown) => {
          // The view may still bring it; only a response nobody can read is an error.
          if (!find(channel.messages(), s)) fail(err);
        });
      }, fail);
    },
    cancel() {
      closed = true;
      stop?.();
    },
  });
}

/** The message `serial` in a view sorted by serial (binary search: views of long chats are large). */
export function find(messages: readonly Message[], serial: Serial): Message | undefined {
  let lo = 0;
  let hi = messages.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    const s = (messages[mid] as Message).serial;
    if (s === serial) return messages[mid];
    if (s < serial) lo = mid + 1;
    else hi = mid;
  }
  return undefined;
}
