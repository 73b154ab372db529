/**
 * A channel as the application sees it: subscribe to events, publish and
 * mutate, read history, and bind a UI to the folded conversation view.
 *
 * The channel owns the resume state (its last `position` and the view) and
 * is transport-agnostic: a {@link ChannelBackend} (WebSocket or SSE+REST)
 * carries frames and calls back the `_on*` methods.
 */

import { Emitter } from './emitter.js';
import { ErrorCodes, TetherError } from './errors.js';
import type { RestClient } from './rest.js';
import type { Persistence, SavedChannel } from './storage.js';
import type {
  Ack,
  AppendOptions,
  Continuity,
  DeleteOptions,
  HistoryOptions,
  HistoryPage,
  Message,
  Mutation,
  NewMessage,
  Serial,
  UpdatePatch,
} from './types.js';
import { generateId } from './util.js';
import { View } from './view.js';

/** Where a channel is in its attach lifecycle. */
export type ChannelState = 'initialized' | 'attaching' | 'attached' | 'detaching' | 'detached' | 'failed';

/** The result of an attach: how the server honoured the resume position. */
export interface AttachResult {
  continuity: Continuity;
  /** Present with `continuity: "lost"` (code 41000). */
  error?: TetherError;
}

/** Where to start receiving, computed by the channel each time it (re)attaches. */
export interface ResumeParams {
  from?: Serial;
  rewind?: number;
}

/** Extra facts about a delivered event. */
export interface EventInfo {
  /** Present when the client may resume exactly from this event. */
  position?: Serial;
}

/** A subscriber to channel events. */
export type MessageListener = (event: Message, info: EventInfo) => void;

/** Events of a {@link Channel}. */
export interface ChannelEvents extends Record<string, unknown> {
  state: ChannelState;
  /** Every (re)attach, with its continuity: `new`, `resumed` or `lost`. */
  attached: AttachResult;
  /** The server could not resume from our position: the view was cleared and current state follows. */
  'continuity-lost': TetherError;
  detached: { error?: TetherError };
  /** The (re)attach caught up: what follows is live. A UI can drop its "loading" state here. */
  synced: { position?: Serial };
  error: TetherError;
  /** The view changed (batched per microtask); the payload is the new immutable list. */
  messages: readonly Message[];
  message: { event: Message; info: EventInfo };
}

/** What a transport does for a channel. */
export interface ChannelBackend {
  /** Start (or restart) receiving; results arrive through `_onAttached` / `_onAttachFailed`. */
  attach(channel: Channel): void;
  /** Stop receiving. */
  detach(channel: Channel): Promise<void>;
  /** Apply a publish or mutation and resolve with the ack. */
  mutate(mutation: Mutation): Promise<Ack>;
}

/** Options a client passes to its channels. */
export interface ChannelContext {
  backend: ChannelBackend;
  rest: RestClient;
  persistence: Persistence | undefined;
  /** Rewind for a fresh attach (no stored position). */
  defaultRewind: number;
  /** Whether the client was closed. */
  isClosed: () => boolean;
}

/** One named channel of a {@link TetherClient}. Get it with `client.channel(name)`. */
export class Channel extends Emitter<ChannelEvents> {
  private _state: ChannelState = 'initialized';
  private readonly view = new View();
  /** Highest version delivered to listeners per message: the app never sees an event twice. */
  private readonly seen = new Map<Serial, Serial>();
  private _position: Serial | undefined;
  private rewind: number;
  private wanted = false;
  private waiters: { resolve: (r: AttachResult) => void; reject: (e: TetherError) => void }[] = [];
  private lastAttach: AttachResult | undefined;
  /** Bumped when the view is reset, so late out-of-band fetches are discarded. */
  private generation = 0;
  private readonly filling = new Set<Serial>();
  private notifyQueued = false;

  /** @internal Created by {@link TetherClient.channel}. */
  constructor(
    readonly name: string,
    private readonly ctx: ChannelContext,
  ) {
    super();
    this.rewind = ctx.defaultRewind;
    const saved = ctx.persistence?.load(name);
    if (saved) {
      this.view.load(saved.messages);
      this._position = saved.position;
      for (const m of this.view.messages()) this.seen.set(m.serial, m.version.serial);
    }
  }

  /** Attach lifecycle state. */
  get state(): ChannelState {
    return this._state;
  }

  /** The last position received: where a reconnect resumes from. */
  get position(): Serial | undefined {
    return this._position;
  }

  /**
   * Starts receiving. With a known position (from this session or restored
   * from storage) it resumes exactly after it; otherwise it attaches fresh
   * with `rewind` (default 100) so a late joiner sees the conversation so far.
   * Resolves on the server's `attached`; re-attaching after reconnects is
   * automatic until {@link detach}.
   */
  attach(opts: { rewind?: number } = {}): Promise<AttachResult> {
    if (opts.rewind !== undefined) this.rewind = opts.rewind;
    if (this.ctx.isClosed()) return Promise.reject(new TetherError(ErrorCodes.ClientClosed, 'client closed'));
    this.wanted = true;
    if (this._state === 'attached' && this.lastAttach) return Promise.resolve(this.lastAttach);
    const p = new Promise<AttachResult>((resolve, reject) => this.waiters.push({ resolve, reject }));
    if (this._state !== 'attaching') {
      this.setState('attaching');
      this.ctx.backend.attach(this);
    }
    return p;
  }

  /** Stops receiving. The view and position are kept, so a later attach resumes. */
  async detach(): Promise<void> {
    this.wanted = false;
    this.settleWaiters(new TetherError(ErrorCodes.NotAttached, 'detached before the attach completed'));
    if (this._state === 'attached' || this._state === 'attaching') {
      this.setState('detaching');
      try {
        await this.ctx.backend.detach(this);
      } finally {
        if (!this.wanted) this.setState('detached');
      }
      this.emit('detached', {});
    }
  }

  /**
   * Listens to events in channel order, each delivered at most once even
   * across reconnects and resumes (an event whose version is not newer than
   * the one already delivered for its message is dropped). Attaches if
   * needed. Returns a function that unsubscribes.
   *
   * An `append` event's `data` is only the fragment; most UIs want
   * {@link onMessages} instead.
   */
  subscribe(listener: MessageListener): () => void {
    const off = this.on('message', ({ event, info }) => listener(event, info));
    this.attach().catch(() => {
      /* reported through the 'error' event */
    });
    return off;
  }

  /** The current messages, ordered by serial, with appends folded in. Immutable; replaced on change. */
  messages(): readonly Message[] {
    return this.view.messages();
  }

  /**
   * Observes the conversation view: `cb` is called now with the current
   * messages and again (batched per microtask) whenever they change. This is
   * what a chat UI binds to. Attaches if needed. Returns an unsubscribe.
   */
  onMessages(cb: (messages: readonly Message[]) => void): () => void {
    const off = this.on('messages', cb);
    cb(this.view.messages());
    this.attach().catch(() => {
      /* reported through the 'error' event */
    });
    return off;
  }

  /**
   * Publishes a message. An `id` is generated when absent so that a resend
   * after a dropped connection is deduplicated by the server (exactly-once);
   * `duplicate: true` in the ack means the server already had this id.
   */
  publish(message: NewMessage): Promise<Ack> {
    const msg: NewMessage = { ...message, id: message.id ?? generateId() };
    return this.ctx.backend.mutate({ type: 'publish', channel: this.name, message: msg });
  }

  /**
   * Appends a string fragment to message `serial`. Pipelined: call it for
   * every token without awaiting. If the connection drops while it is in
   * flight, it rejects with `OutcomeUnknown` (80001) rather than risk a
   * double append (protocol v1 has no idempotency key for appends).
   */
  append(serial: Serial, data: string, opts: AppendOptions = {}): Promise<Ack> {
    return this.ctx.backend.mutate({ type: 'append', channel: this.name, serial, data, ...opts });
  }

  /** Makes a new version of message `serial` (`name`/`data` replace, `extras` merge). */
  update(serial: Serial, patch: UpdatePatch): Promise<Ack> {
    return this.ctx.backend.mutate({ type: 'update', channel: this.name, serial, ...patch });
  }

  /** Replaces message `serial` with a tombstone (`data: null`), keeping its place. */
  delete(serial: Serial, opts: DeleteOptions = {}): Promise<Ack> {
    return this.ctx.backend.mutate({ type: 'delete', channel: this.name, serial, ...opts });
  }

  /** History pages (current version of each message), fetched lazily: `for await (const page of ch.history())`. */
  history(opts: HistoryOptions = {}): AsyncGenerator<HistoryPage, void, undefined> {
    return this.ctx.rest.history(this.name, opts);
  }

  /** The current version of one message, from the server. */
  message(serial: Serial): Promise<Message> {
    return this.ctx.rest.message(this.name, serial);
  }

  /** Every version of a message, oldest first. */
  versions(serial: Serial): Promise<Message[]> {
    return this.ctx.rest.versions(this.name, serial);
  }

  // ---- called by backends -------------------------------------------------

  /** @internal Whether the app wants this channel attached (re-attach after reconnect). */
  get _wanted(): boolean {
    return this.wanted;
  }

  /** @internal Rewind for the next fresh attach. */
  _setRewind(rewind: number): void {
    this.rewind = rewind;
  }

  /** @internal Where the next attach starts. */
  _resumeParams(): ResumeParams {
    return this._position !== undefined ? { from: this._position } : { rewind: this.rewind };
  }

  /** @internal The transport lost its connection; a re-attach will follow. */
  _onSuspended(): void {
    if (this.wanted && this._state === 'attached') this.setState('attaching');
  }

  /** @internal The server's `attached`. Must run before the frames that follow it. */
  _onAttached(continuity: Continuity, error?: TetherError): void {
    if (continuity === 'lost') this.reset();
    const result: AttachResult = error ? { continuity, error } : { continuity };
    this.lastAttach = result;
    if (this.wanted) this.setState('attached');
    if (continuity === 'lost') {
      this.emit('continuity-lost', error ?? new TetherError(ErrorCodes.ContinuityLost, 'continuity lost'));
    }
    this.emit('attached', result);
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.resolve(result);
  }

  /** @internal An attach the server refused (bad name, forbidden...). */
  _onAttachFailed(err: TetherError): void {
    if (err.code === ErrorCodes.InvalidSerial && this._position !== undefined) {
      // A corrupt stored position: start over rather than fail forever.
      this.reset();
      this.ctx.backend.attach(this);
      return;
    }
    this.wanted = false;
    this.setState('failed');
    this.settleWaiters(err);
    this.emit('error', err);
  }

  /** @internal The server detached us without being asked. */
  _onDetached(error?: TetherError): void {
    if (this._state === 'detaching') return;
    this.wanted = false;
    this.setState('detached');
    this.settleWaiters(error ?? new TetherError(ErrorCodes.NotAttached, 'detached by the server'));
    this.emit('detached', error ? { error } : {});
  }

  /** @internal The client closed. */
  _onClosed(): void {
    this.settleWaiters(new TetherError(ErrorCodes.ClientClosed, 'client closed'));
    this.setState('detached');
  }

  /** @internal One event, with its position when it carries one. */
  _onMessage(event: Message, position: Serial | undefined): void {
    const seen = this.seen.get(event.serial);
    const fresh = seen === undefined || seen < event.version.serial;
    const folded = this.view.apply(event);
    if (fresh) this.seen.set(event.serial, event.version.serial);
    if (position !== undefined) this._position = position;
    if (folded === 'applied') this.queueNotify();
    if (folded === 'orphan') this.fill(event.serial);
    if (folded === 'applied' || position !== undefined) {
      this.ctx.persistence?.schedule(this.name, this.saveState);
    }
    if (fresh) this.emit('message', { event, info: position !== undefined ? { position } : {} });
  }

  /** @internal The server finished catching up; `position` (if any) is exact. */
  _onSynced(position: Serial | undefined): void {
    if (position !== undefined) {
      this._position = position;
      this.ctx.persistence?.schedule(this.name, this.saveState);
    }
    this.emit('synced', position !== undefined ? { position } : {});
  }

  // ---- internals ----------------------------------------------------------

  private readonly saveState = (): SavedChannel | undefined =>
    this._position === undefined ? undefined : { position: this._position, messages: [...this.view.messages()] };

  private reset(): void {
    this.generation++;
    this.view.clear();
    this.seen.clear();
    this._position = undefined;
    this.ctx.persistence?.remove(this.name);
    this.queueNotify();
  }

  /** Fetches a message the view only has fragments of (it started before we attached). */
  private fill(serial: Serial): void {
    if (this.filling.has(serial)) return;
    this.filling.add(serial);
    const generation = this.generation;
    void (async () => {
      try {
        for (let i = 0; i < 3; i++) {
          const message = await this.ctx.rest.message(this.name, serial);
          if (generation !== this.generation || this.view.has(serial)) return;
          if (this.view.fill(message)) {
            this.queueNotify();
            this.ctx.persistence?.schedule(this.name, this.saveState);
            return;
          }
        }
      } catch {
        /* the view simply lacks it; a later full event will insert it */
      } finally {
        this.filling.delete(serial);
      }
    })();
  }

  private queueNotify(): void {
    if (this.notifyQueued) return;
    this.notifyQueued = true;
    queueMicrotask(() => {
      this.notifyQueued = false;
      this.emit('messages', this.view.messages());
    });
  }

  private settleWaiters(err: TetherError): void {
    const waiters = this.waiters;
    this.waiters = [];
    for (const w of waiters) w.reject(err);
  }

  private setState(state: ChannelState): void {
    if (this._state === state) return;
    this._state = state;
    this.emit('state', state);
  }
}
