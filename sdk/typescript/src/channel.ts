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
import { MessageNames } from './conventions.js';
import { ChannelPresence } from './presence.js';
import type {
  Ack,
  AppendOptions,
  Continuity,
  DeleteOptions,
  EphemeralMessage,
  HistoryOptions,
  HistoryPage,
  Message,
  Mutation,
  NewMessage,
  PresenceAction,
  PresenceMember,
  Serial,
  UpdatePatch,
} from './types.js';
import { generateId, seg } from './util.js';
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
  /** Also deliver presence (`presence-sync`, then `presence` events). */
  presence?: boolean;
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
  /** A live-only message (never stored, never replayed). */
  ephemeral: EphemeralMessage;
}

/** A listener to ephemeral (live-only) messages. */
export type EphemeralListener = (message: EphemeralMessage) => void;

/** Options of `client.channel(name, opts)`. */
export interface ChannelOptions {
  /** How many recent messages a fresh attach loads (default: the client's `rewind`, 100). */
  rewind?: number;
  /**
   * Attach with presence, so `channel.presence.members()` is kept current.
   * Set automatically by `presence.subscribe` / `presence.onMembers`. Needs
   * the `presence-subscribe` capability.
   */
  presence?: boolean;
}

/** What a transport does for a channel. */
export interface ChannelBackend {
  /** Start (or restart) receiving; results arrive through `_onAttached` / `_onAttachFailed`. */
  attach(channel: Channel): void;
  /** Stop receiving. */
  detach(channel: Channel): Promise<void>;
  /** Apply a publish or mutation and resolve with the ack. */
  mutate(mutation: Mutation): Promise<Ack>;
  /** Enter, update or leave presence as this connection; resolves on `ok`. */
  presence(channel: string, action: PresenceAction, data: unknown): Promise<void>;
  /** Publish a live-only message; resolves on `ok`. */
  ephemeral(channel: string, message: NewMessage): Promise<void>;
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
  /** The last channel-level error the server sent without a request: the reason for a `detached` that follows. */
  private serverError: TetherError | undefined;
  private waiters: { resolve: (r: AttachResult) => void; reject: (e: TetherError) => void }[] = [];
  private lastAttach: AttachResult | undefined;
  /** Bumped when the view is reset, so late out-of-band fetches are discarded. */
  private generation = 0;
  private readonly filling = new Set<Serial>();
  private notifyQueued = false;
  private wantPresence = false;
  /** An attach was asked for and not yet handed to the backend (it is sent in a microtask). */
  private attachPending = false;
  /**
   * Presence of this channel: `enter`, `update`, `leave`, `members`,
   * `subscribe`, `onMembers`. Entering and leaving need the WebSocket
   * transport; watching works over SSE too.
   */
  readonly presence: ChannelPresence;

  /** @internal Created by {@link TetherClient.channel}. */
  constructor(
    readonly name: string,
    private readonly ctx: ChannelContext,
  ) {
    super();
    this.rewind = ctx.defaultRewind;
    this.presence = new ChannelPresence({
      send: (action, data) => this.ctx.backend.presence(this.name, action, data),
      enable: () => this.enablePresence(),
      fetch: async () => (await this.ctx.rest.call<{ members?: PresenceMember[] }>('GET', `/channels/${seg(this.name)}/presence`)).members ?? [],
      report: (err) => this.emit('error', err),
    });
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
      // Sent a moment later, so that everything the app sets up in the same
      // tick (say, onMessages and presence.onMembers) makes one attach.
      this.attachPending = true;
      queueMicrotask(() => {
        if (!this.attachPending || !this.wanted) return;
        this.attachPending = false;
        this.ctx.backend.attach(this);
      });
    }
    return p;
  }

  /** Whether the channel is (to be) attached with presence. */
  get presenceEnabled(): boolean {
    return this.wantPresence;
  }

  /** Stops receiving. The view and position are kept, so a later attach resumes. */
  async detach(): Promise<void> {
    this.wanted = false;
    this.attachPending = false;
    this.presence._reset();
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
   * flight, it is re-sent on the resumed connection with the same `seq` and
   * applied exactly once. Only if the connection cannot be resumed does it
   * reject with `OutcomeUnknown` (80001) rather than risk a double append.
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

  /**
   * Publishes a live-only message (`"ephemeral": true`): delivered to the
   * channel's current subscribers, never stored, never replayed. For typing
   * indicators and "calling tool X" ticks. Resolves on the server's `ok`.
   * Needs the WebSocket transport. Not re-sent after a drop.
   */
  publishEphemeral(message: NewMessage): Promise<void> {
    return this.ctx.backend.ephemeral(this.name, message);
  }

  /** Listens to ephemeral messages (attaches if needed). Returns an unsubscribe. */
  onEphemeral(listener: EphemeralListener): () => void {
    const off = this.on('ephemeral', listener);
    this.attach().catch(() => {
      /* reported through the 'error' event */
    });
    return off;
  }

  /**
   * Asks the agent to stop the streaming response `serial` (publishes
   * `{name: "cancel", extras: {target: serial}}`). The server marks the
   * response `cancelled` right behind it, so the agent's next append is
   * refused with `StreamEnded` (40901). Needs `publish`.
   */
  cancel(serial: Serial): Promise<Ack> {
    return this.publish({ name: MessageNames.Cancel, extras: { target: serial } });
  }

  /**
   * Gives the agent a new instruction about response `serial` (publishes
   * `{name: "steer", data: instruction, extras: {target: serial}}`). A
   * convention only: the agent decides what to do with it.
   */
  steer(serial: Serial, instruction: unknown): Promise<Ack> {
    return this.publish({ name: MessageNames.Steer, data: instruction, extras: { target: serial } });
  }

  /** An operator takes the conversation over (`handoff` / `claim`). Needs the `operator` capability (else 40300). */
  claim(): Promise<Ack> {
    return this.publish({ name: MessageNames.Handoff, extras: { action: 'claim' } });
  }

  /** An operator hands the conversation back (`handoff` / `release`). Needs `operator`. */
  release(): Promise<Ack> {
    return this.publish({ name: MessageNames.Handoff, extras: { action: 'release' } });
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

  /** @internal Where the next attach starts (the backend is sending it now). */
  _resumeParams(): ResumeParams {
    this.attachPending = false;
    const params: ResumeParams = this._position !== undefined ? { from: this._position } : { rewind: this.rewind };
    if (this.wantPresence) params.presence = true;
    return params;
  }

  /** @internal `client.channel(name, {presence: true})`: deliver presence whenever attached (does not attach by itself). */
  _setPresence(): void {
    if (this.wantPresence) return;
    this.wantPresence = true;
    if (this.wanted && !this.attachPending && (this._state === 'attached' || this._state === 'attaching')) {
      this.ctx.backend.attach(this);
    }
  }

  /** @internal The transport lost its connection; a re-attach will follow. */
  _onSuspended(): void {
    this.presence._suspend();
    if (this.wanted && this._state === 'attached') this.setState('attaching');
  }

  /** @internal A `presence-sync` page. */
  _onPresenceSync(members: PresenceMember[], complete: boolean): void {
    this.presence._onSync(members, complete);
  }

  /** @internal A live presence change. */
  _onPresence(action: PresenceAction, member: PresenceMember): void {
    this.presence._onEvent(action, member);
  }

  /** @internal An error about this channel that answers no request. */
  _onError(err: TetherError): void {
    this.serverError = err;
    this.emit('error', err);
  }

  /** @internal A live-only message. */
  _onEphemeral(message: EphemeralMessage): void {
    this.emit('ephemeral', message);
  }

  /** @internal The server's `attached`. Must run before the frames that follow it. */
  _onAttached(continuity: Continuity, error?: TetherError): void {
    this.serverError = undefined;
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

  /**
   * @internal The server detached us without being asked. Why came in the
   * `error` frame just before (the `detached` frame carries no error).
   */
  _onDetached(): void {
    const error = this.serverError;
    this.serverError = undefined;
    if (this._state === 'detaching') return;
    this.wanted = false;
    this.presence._reset();
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

  /**
   * Makes the attachment deliver presence: attaches if not attached, or
   * re-attaches from the current position if attached without it.
   */
  private enablePresence(): void {
    if (this.ctx.isClosed()) return;
    if (this.wantPresence) {
      if (!this.wanted) this.attach().catch(() => undefined);
      return;
    }
    this.wantPresence = true;
    if (!this.wanted) {
      this.attach().catch(() => undefined);
    } else if (!this.attachPending && (this._state === 'attached' || this._state === 'attaching')) {
      this.ctx.backend.attach(this);
    }
  }

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
