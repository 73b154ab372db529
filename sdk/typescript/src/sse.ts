/**
 * The HTTP fallback transport, for places where a WebSocket cannot get
 * through (some proxies, serverless runtimes): one Server-Sent Events
 * stream per attached channel to receive (`GET /channels/{c}/stream`, whose
 * `id:` is the resume position), and REST to publish and mutate. Channels
 * see the same callbacks as over WebSocket, so the app sees the same API.
 *
 * Reconnects are done here rather than by `EventSource` itself, so both the
 * browser's `EventSource` and the fetch-based reader (Node, or where
 * `EventSource` is missing) resume the same way, with the same backoff.
 */

import type { Auth } from './auth.js';
import type { Channel, ChannelBackend } from './channel.js';
import { ErrorCodes, TetherError } from './errors.js';
import { readJson, type RestClient } from './rest.js';
import type {
  Ack,
  Continuity,
  ConnectionState,
  EphemeralMessage,
  EventSourceConstructor,
  Mutation,
  NewMessage,
  PresenceAction,
  PresenceMember,
} from './types.js';
import { backoffDelay, type BackoffOptions, seg } from './util.js';

/** One dispatched SSE event. `id` is set only when this event carried an `id:` field. */
export interface SseEvent {
  event: string;
  data: string;
  id?: string;
}

/** Callbacks of {@link openEventStream}. */
export interface StreamCallbacks {
  onOpen(): void;
  onEvent(ev: SseEvent): void;
  /** The stream ended or failed. `fatal`: retrying the same request would fail the same way. */
  onEnd(err: TetherError, fatal: boolean): void;
}

/** Options of {@link openEventStream}. */
export interface StreamOptions {
  fetch?: typeof fetch;
  EventSource?: EventSourceConstructor;
  /** Abort a fetch-read stream silent for this long (keep-alives count). */
  silenceMs: number;
}

/** Opens one SSE stream. Call the returned function to close it; no callback fires after that. */
export function openEventStream(url: string, opts: StreamOptions, cb: StreamCallbacks): () => void {
  if (opts.EventSource) return openWithEventSource(url, opts.EventSource, cb);
  return openWithFetch(url, opts, cb);
}

function openWithEventSource(url: string, ES: EventSourceConstructor, cb: StreamCallbacks): () => void {
  let closed = false;
  const es = new ES(url);
  // EventSource repeats the previous id on events without one; that only
  // re-reports the position already held, which is harmless.
  const forward = (event: string) => (ev: { data: string; lastEventId?: string }) => {
    if (closed) return;
    const id = ev.lastEventId ? ev.lastEventId : undefined;
    cb.onEvent(id !== undefined ? { event, data: ev.data, id } : { event, data: ev.data });
  };
  es.onopen = () => {
    if (!closed) cb.onOpen();
  };
  es.addEventListener('attached', forward('attached'));
  es.addEventListener('message', forward('message'));
  es.addEventListener('synced', forward('synced'));
  es.addEventListener('presence-sync', forward('presence-sync'));
  es.addEventListener('presence', forward('presence'));
  es.addEventListener('ephemeral', forward('ephemeral'));
  es.onerror = () => {
    if (closed) return;
    closed = true;
    es.close();
    cb.onEnd(new TetherError(ErrorCodes.NetworkError, 'event stream failed'), false);
  };
  return () => {
    closed = true;
    es.close();
  };
}

function openWithFetch(url: string, opts: StreamOptions, cb: StreamCallbacks): () => void {
  const fetchFn = opts.fetch ?? globalThis.fetch;
  const abort = new AbortController();
  let closed = false;
  let lastActivity = Date.now();
  let watchdog: ReturnType<typeof setTimeout> | undefined;
  const end = (err: TetherError, fatal: boolean) => {
    if (closed) return;
    closed = true;
    clearTimeout(watchdog);
    abort.abort();
    cb.onEnd(err, fatal);
  };
  const arm = () => {
    watchdog = setTimeout(
      () => {
        if (Date.now() - lastActivity >= opts.silenceMs) end(new TetherError(ErrorCodes.NetworkError, 'event stream silent'), false);
        else arm();
      },
      Math.max(10, lastActivity + opts.silenceMs - Date.now()),
    );
  };
  arm();
  void (async () => {
    let res: Response;
    try {
      res = await fetchFn.call(globalThis, url, { headers: { accept: 'text/event-stream' }, signal: abort.signal, cache: 'no-store' });
    } catch (err) {
      end(new TetherError(ErrorCodes.NetworkError, `event stream failed: ${String(err)}`), false);
      return;
    }
    if (!res.ok || !res.body) {
      let err: TetherError;
      try {
        await readJson(res, 'event stream');
        err = new TetherError(ErrorCodes.ProtocolError, 'event stream has no body');
      } catch (e) {
        err = e instanceof TetherError ? e : new TetherError(ErrorCodes.ProtocolError, String(e));
      }
      const s = res.status;
      end(err, s >= 400 && s < 500 && s !== 408 && s !== 429);
      return;
    }
    if (closed) return;
    cb.onOpen();
    const parser = new SseParser((ev) => {
      if (!closed) cb.onEvent(ev);
    });
    const reader = res.body.getReader();
    const decoder = new TextDecoder();
    try {
      for (;;) {
        const { value, done } = await reader.read();
        if (done || closed) break;
        lastActivity = Date.now();
        parser.push(decoder.decode(value, { stream: true }));
      }
    } catch {
      /* aborted or network failure: reported below */
    }
    end(new TetherError(ErrorCodes.NetworkError, 'event stream ended'), false);
  })();
  return () => {
    closed = true;
    clearTimeout(watchdog);
    abort.abort();
  };
}

/** An incremental `text/event-stream` parser (the WHATWG rules, minus `retry:`). */
export class SseParser {
  private buffer = '';
  private data: string[] = [];
  private event = '';
  private id: string | undefined;

  constructor(private readonly dispatch: (ev: SseEvent) => void) {}

  /** Feeds decoded text; complete events are dispatched synchronously. */
  push(text: string): void {
    this.buffer += text;
    let start = 0;
    const buf = this.buffer;
    for (let i = 0; i < buf.length; i++) {
      const c = buf.charCodeAt(i);
      if (c !== 10 && c !== 13) continue;
      if (c === 13 && i === buf.length - 1) break; // maybe a CRLF split across chunks
      this.line(buf.slice(start, i));
      if (c === 13 && buf.charCodeAt(i + 1) === 10) i++;
      start = i + 1;
    }
    this.buffer = buf.slice(start);
  }

  private line(line: string): void {
    if (line === '') {
      if (this.data.length > 0) {
        const ev: SseEvent = { event: this.event || 'message', data: this.data.join('\n') };
        if (this.id !== undefined) ev.id = this.id;
        this.dispatch(ev);
      }
      this.data = [];
      this.event = '';
      this.id = undefined;
      return;
    }
    if (line.startsWith(':')) return;
    const colon = line.indexOf(':');
    const field = colon < 0 ? line : line.slice(0, colon);
    let value = colon < 0 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') this.data.push(value);
    else if (field === 'event') this.event = value;
    else if (field === 'id' && !value.includes('\0')) this.id = value;
  }
}

/** Options of an {@link SseBackend}. */
export interface SseBackendOptions {
  url: string;
  /** Append roll-up window asked of the server (ms; 0 = every fragment). */
  rollupMs?: number;
  rest: RestClient;
  fetch?: typeof fetch;
  EventSource?: EventSourceConstructor;
  auth?: Auth;
  reconnect?: BackoffOptions;
  /** Default 45000 ms: three of the server's default 15 s keep-alives. */
  silenceMs?: number;
  onState: (state: ConnectionState) => void;
}

type StreamState = 'connecting' | 'open' | 'waiting';

interface Stream {
  state: StreamState;
  attempt: number;
  close?: () => void;
  timer?: ReturnType<typeof setTimeout>;
}

/** Channels over SSE (receive) and REST (send). */
export class SseBackend implements ChannelBackend {
  private readonly streams = new Map<Channel, Stream>();
  /** Per-channel tail of the mutation chain: REST requests in parallel could be applied out of order. */
  private readonly tails = new Map<string, Promise<unknown>>();
  private closed = false;
  private lastState: ConnectionState | undefined;

  constructor(private readonly opts: SseBackendOptions) {}

  attach(channel: Channel): void {
    if (this.closed) return;
    const old = this.streams.get(channel);
    if (old) this.stop(old);
    const stream: Stream = { state: 'connecting', attempt: old?.attempt ?? 0 };
    this.streams.set(channel, stream);
    this.start(channel, stream);
  }

  async detach(channel: Channel): Promise<void> {
    const stream = this.streams.get(channel);
    if (stream) this.stop(stream);
    this.streams.delete(channel);
    this.report();
  }

  /**
   * Sends over REST, in order per channel. A publish (which always has an
   * id) is retried on network and 5xx failures; other mutations are not
   * (at-most-once), and a network failure becomes `OutcomeUnknown`.
   */
  mutate(m: Mutation): Promise<Ack> {
    if (this.closed) return Promise.reject(new TetherError(ErrorCodes.ClientClosed, 'client closed'));
    const prev = this.tails.get(m.channel) ?? Promise.resolve();
    const run = prev.then(
      () => this.send(m),
      () => this.send(m),
    );
    const tail = run.catch(() => undefined);
    this.tails.set(m.channel, tail);
    void tail.then(() => {
      if (this.tails.get(m.channel) === tail) this.tails.delete(m.channel);
    });
    return run;
  }

  /** Presence enter/update/leave has no HTTP route: it needs the WebSocket transport. */
  presence(_channel: string, _action: PresenceAction, _data: unknown): Promise<void> {
    return Promise.reject(new TetherError(ErrorCodes.Unsupported, 'entering presence needs the WebSocket transport (over SSE, presence can only be watched)'));
  }

  /** Ephemeral publishes have no HTTP route: they need the WebSocket transport. */
  ephemeral(_channel: string, _message: NewMessage): Promise<void> {
    return Promise.reject(new TetherError(ErrorCodes.Unsupported, 'ephemeral publish needs the WebSocket transport'));
  }

  /** Stops every stream. */
  close(): void {
    this.closed = true;
    for (const stream of this.streams.values()) this.stop(stream);
    this.streams.clear();
  }

  private async send(m: Mutation): Promise<Ack> {
    for (let attempt = 0; ; attempt++) {
      try {
        return await this.opts.rest.mutate(m);
      } catch (e) {
        const err = e instanceof TetherError ? e : new TetherError(ErrorCodes.NetworkError, String(e));
        const retryable = err.code === ErrorCodes.NetworkError || err.code >= 50000;
        if (m.type === 'publish' && retryable && attempt < 5 && !this.closed) {
          await new Promise((r) => setTimeout(r, backoffDelay(attempt, this.opts.reconnect)));
          continue;
        }
        if (err.code === ErrorCodes.NetworkError && m.type !== 'publish') {
          throw new TetherError(ErrorCodes.OutcomeUnknown, `${err.message}; the ${m.type} may or may not have been applied`);
        }
        throw err;
      }
    }
  }

  private start(channel: Channel, stream: Stream): void {
    stream.state = 'connecting';
    this.report();
    const auth = this.opts.auth;
    const tokenP = auth ? auth.token() : Promise.resolve(undefined);
    tokenP.then(
      (token) => {
        if (this.streams.get(channel) !== stream) return;
        const q = new URLSearchParams();
        const params = channel._resumeParams();
        if (params.from !== undefined) q.set('from', params.from);
        if (params.rewind !== undefined) q.set('rewind', String(params.rewind));
        if (params.presence) q.set('presence', 'true');
        for (const [k, v] of Object.entries(auth?.query(token) ?? {})) q.set(k, v);
        if (this.opts.rollupMs !== undefined) q.set('rollup_ms', String(this.opts.rollupMs));
        const url = `${this.opts.rest.base}/channels/${seg(channel.name)}/stream?${q.toString()}`;
        const streamOpts: Parameters<typeof openEventStream>[1] = { silenceMs: this.opts.silenceMs ?? 45000 };
        if (this.opts.fetch) streamOpts.fetch = this.opts.fetch;
        if (this.opts.EventSource) streamOpts.EventSource = this.opts.EventSource;
        stream.close = openEventStream(url, streamOpts, {
          onOpen: () => {
            stream.state = 'open';
            this.report();
          },
          onEvent: (ev) => this.onEvent(channel, stream, ev),
          onEnd: (err, fatal) => this.onEnd(channel, stream, err, fatal),
        });
      },
      (err: unknown) => this.onEnd(channel, stream, new TetherError(ErrorCodes.Unauthorized, `authCallback failed: ${String(err)}`), false),
    );
  }

  private onEvent(channel: Channel, stream: Stream, ev: SseEvent): void {
    let body: unknown;
    try {
      body = JSON.parse(ev.data);
    } catch {
      return;
    }
    if (ev.event === 'attached') {
      stream.attempt = 0;
      const a = body as { continuity?: Continuity; error?: unknown };
      channel._onAttached(a.continuity ?? 'new', a.error ? TetherError.from(a.error) : undefined);
    } else if (ev.event === 'message') {
      channel._onMessage(body as Parameters<Channel['_onMessage']>[0], ev.id);
    } else if (ev.event === 'synced') {
      channel._onSynced(ev.id);
    } else if (ev.event === 'presence-sync') {
      const p = body as { members?: PresenceMember[]; complete?: boolean };
      channel._onPresenceSync(p.members ?? [], p.complete !== false);
    } else if (ev.event === 'presence') {
      const p = body as { action: PresenceAction; member: PresenceMember };
      if (p.member) channel._onPresence(p.action, p.member);
    } else if (ev.event === 'ephemeral') {
      channel._onEphemeral(body as EphemeralMessage);
    } else if (ev.event === 'error') {
      const e = TetherError.from(body);
      if (e.code === ErrorCodes.TokenExpired || e.code === ErrorCodes.Unauthorized) this.opts.auth?.invalidate();
    }
  }

  private onEnd(channel: Channel, stream: Stream, err: TetherError, fatal: boolean): void {
    if (this.streams.get(channel) !== stream || this.closed) return;
    stream.close = undefined;
    if ((err.code === ErrorCodes.TokenExpired || err.code === ErrorCodes.Unauthorized) && this.opts.auth?.canRenew) {
      // A refused or expired token: renew it and reconnect (resuming from the position).
      this.opts.auth.invalidate();
      fatal = false;
    }
    if (fatal) {
      this.streams.delete(channel);
      this.report();
      channel._onAttachFailed(err);
      return;
    }
    stream.state = 'waiting';
    channel._onSuspended();
    this.report();
    stream.timer = setTimeout(() => {
      if (this.streams.get(channel) === stream) this.start(channel, stream);
    }, backoffDelay(stream.attempt++, this.opts.reconnect));
  }

  private stop(stream: Stream): void {
    clearTimeout(stream.timer);
    stream.close?.();
    stream.close = undefined;
  }

  /** Aggregates stream states into one client state: connected only when every stream is open. */
  private report(): void {
    if (this.closed) return;
    let state: ConnectionState = 'connected';
    for (const s of this.streams.values()) {
      if (s.state === 'waiting') {
        state = 'disconnected';
        break;
      }
      if (s.state === 'connecting') state = 'connecting';
    }
    if (state !== this.lastState) {
      this.lastState = state;
      this.opts.onState(state);
    }
  }
}
