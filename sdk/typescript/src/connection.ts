/**
 * One WebSocket to the server, kept alive: reconnect with exponential
 * backoff and jitter, detection of a silent (dead) server through the
 * `heartbeat` frames, and request/reply correlation by `req` so many
 * requests can be in flight at once (the server applies and answers one
 * connection's frames in order).
 *
 * **Connection resume.** The `connected` frame gives a `connection_id` and
 * a `resume_key`. After a drop, the first frame on the next socket is
 * `resume` (with every channel's position); on `resumed` the socket *is* the
 * old connection again: the server kept its presence and its exactly-once
 * state, and re-attaches its channels by itself. Every publish and mutation
 * carries `seq`, a per-connection counter, and the ones that were in flight
 * at the drop are re-sent with the same `seq`, so each is applied exactly
 * once. If the resume is refused (41001, or too late), the socket is a new
 * connection: channels are re-attached by position, presence is re-entered,
 * and in-flight mutations are resolved by their {@link DeliveryPolicy}.
 *
 * **Token renewal.** Before the token expires, a fresh one from the
 * `authCallback` is sent as an `auth` frame on the live connection;
 * attachments continue. If the server closes with 4005 (expired) the token
 * is renewed, and the next socket resumes.
 */

import type { Auth } from './auth.js';
import { Emitter } from './emitter.js';
import { ErrorCodes, TetherError } from './errors.js';
import type {
  ClientFrame,
  ConnectionState,
  ResumedAttachment,
  Serial,
  ServerFrame,
  ServerLimits,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';
import { parseServerFrame } from './frames.js';
import { backoffDelay, type BackoffOptions, utf8Length, wsUrl } from './util.js';

/**
 * What to do with a request that was written to a socket which then dropped
 * before the reply came:
 * - `sequenced`: a publish or mutation. It carries `seq`; after a successful
 *   connection resume it is re-sent with the same `seq` and applied exactly
 *   once. If the resume fails it is re-sent when `idempotent` (a publish
 *   with an id, which the server deduplicates), otherwise rejected with
 *   `OutcomeUnknown` (80001);
 * - `resend`: idempotent whatever happens (presence enter/update/leave):
 *   sent again on the next connection;
 * - `at-most-once`: rejected with `OutcomeUnknown` (ephemeral publish: it
 *   has no `seq`, and a late typing indicator is worthless anyway);
 * - `transient`: only meaningful on this socket (attach, detach, ping,
 *   auth): rejected, and never queued while disconnected: the owner
 *   re-issues it.
 * Requests made while disconnected and never written are queued and sent in
 * order once connected, whatever their policy (except `transient`).
 */
export type DeliveryPolicy = 'sequenced' | 'resend' | 'at-most-once' | 'transient';

/** What the server said when this connection became usable. */
export interface ConnectedInfo {
  /** The connection's id (after a resume: the resumed connection's). */
  connectionId: string;
  clientId: string | undefined;
  heartbeatMs: number;
  idleTimeoutMs: number | undefined;
  limits: ServerLimits;
  /** True when this socket resumed the previous connection (presence and channels carried over). */
  resumed: boolean;
  /** After a resume: the channels the server re-attached by itself. */
  attachments: ResumedAttachment[];
  /** Why a resume that was tried failed (41001), if it did. */
  resumeError: TetherError | undefined;
}

/** What is kept to resume a connection, in memory and (optionally) in storage for a page reload. */
export interface SessionRecord {
  connectionId: string;
  resumeKey: string;
  ttlMs: number;
  /** Every `seq` used so far is at most this (a reservation, so storage is written rarely). */
  seq: number;
  /** Last time the connection was known to be alive (ms); the server keeps it `ttlMs` after a drop. */
  aliveAt: number;
}

/** Where a {@link SessionRecord} is saved. */
export interface SessionStore {
  load(): SessionRecord | undefined;
  save(record: SessionRecord | undefined): void;
}

/** Events of a {@link Connection}. */
export interface ConnectionEvents extends Record<string, unknown> {
  state: ConnectionState;
  /**
   * The socket is ready (resumed or fresh): re-attach what the server did
   * not, re-enter presence after a failed resume. Runs before queued
   * requests are flushed.
   */
  connected: ConnectedInfo;
  /** Every frame after `connected`, including replies, for routing to channels. */
  frame: ServerFrame;
  /** A connection-level error (an `error` frame without `req`, a refused connect, a failed renewal). */
  error: TetherError;
}

/** Options of a {@link Connection}. */
export interface ConnectionOptions {
  /** Server base URL (http, https, ws or wss). */
  url: string;
  /** Append roll-up window asked of the server (ms; 0 = every fragment). */
  rollupMs?: number;
  WebSocket: WebSocketConstructor;
  /** The credential, and its renewal. */
  auth: Auth;
  /** The last position of every channel the app wants attached, for the `resume` frame. */
  positions?: () => Record<string, Serial>;
  /** Keeps the resume state across page reloads. */
  session?: SessionStore;
  reconnect?: BackoffOptions;
  /** Give up on an attempt that has not received `connected` in this time (default 15000 ms). */
  connectTimeoutMs?: number;
  /**
   * Treat the server as dead after this much silence (default: twice the
   * announced `heartbeat_ms`, plus one second).
   */
  silenceTimeoutMs?: number;
}

interface Pending {
  frame: ClientFrame;
  policy: DeliveryPolicy;
  /** For `sequenced`: safe to re-send on a new connection (a publish with an id). */
  idempotent: boolean;
  /** Assigned when first written; kept for re-sends after a resume. */
  seq?: number;
  /** Order of first write, so re-sends keep the original order. */
  order?: number;
  resolve: (frame: ServerFrame) => void;
  reject: (err: TetherError) => void;
}

/** How far ahead `seq` is reserved in storage. */
const SEQ_BLOCK = 1000;

/** Close codes after which retrying the same frames would fail the same way. */
const CLIENT_FAULT_CLOSE = new Set([4000, 4009]);
const AUTH_CLOSE = new Set([4003, 4004]);
const EXPIRED_CLOSE = 4005;

/** A self-healing, resumable WebSocket with pipelined requests. See the module doc. */
export class Connection extends Emitter<ConnectionEvents> {
  private _state: ConnectionState = 'initialized';
  private socket: WebSocketLike | undefined;
  private readonly inflight = new Map<number, Pending>();
  private outbox: Pending[] = [];
  /** Written to a socket that dropped; settled once the next socket's resume succeeds or fails. */
  private limbo: Pending[] = [];
  private nextReq = 1;
  private writes = 0;
  private seq = 0;
  private seqReserved = 0;
  private attempt = 0;
  /** Consecutive attempts that ended before `connected` (a refused upgrade looks like this). */
  private failedAttempts = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private renewTimer: ReturnType<typeof setTimeout> | undefined;
  private lastActivity = 0;
  private silenceMs = 0;
  private info: ConnectedInfo | undefined;
  private failure: TetherError | undefined;
  /** The connection to resume on the next socket, with when it dropped. */
  private session: (SessionRecord & { droppedAt?: number }) | undefined;
  /** The `connected` frame of the current socket, while its handshake runs. */
  private fresh: Extract<ServerFrame, { type: 'connected' }> | undefined;
  /** `req` of the `resume` frame awaiting its reply. */
  private resumeReq: number | undefined;
  /** The last connection-level error on the current socket (the reason for the close that follows). */
  private socketError: TetherError | undefined;
  private readonly onOnline = (): void => {
    if (this._state === 'disconnected') this.connectNow();
  };

  constructor(private readonly opts: ConnectionOptions) {
    super();
    const saved = opts.session?.load();
    if (saved) {
      // A reloaded page: try to carry on as the connection it had.
      this.session = { ...saved, droppedAt: saved.aliveAt };
      this.seq = saved.seq;
      this.seqReserved = saved.seq;
    }
    const g = globalThis as { addEventListener?: (t: string, l: () => void) => void };
    g.addEventListener?.('online', this.onOnline);
  }

  /** Current state. */
  get state(): ConnectionState {
    return this._state;
  }

  /** The current connection, if connected. */
  get connectedInfo(): ConnectedInfo | undefined {
    return this._state === 'connected' ? this.info : undefined;
  }

  /** The resume state to save (a page reload resumes from it), or undefined. */
  sessionRecord(): SessionRecord | undefined {
    const s = this.session;
    if (!s) return undefined;
    const aliveAt = this._state === 'connected' ? Date.now() : (s.droppedAt ?? s.aliveAt);
    return { connectionId: s.connectionId, resumeKey: s.resumeKey, ttlMs: s.ttlMs, seq: this.seqReserved, aliveAt };
  }

  /** Starts connecting if not yet started; idempotent. */
  connect(): void {
    if (this._state === 'initialized') this.connectNow();
  }

  /**
   * Sends `frame` with a fresh `req` and resolves with the server's reply
   * (`ack`, `attached`, `detached`, `pong`, `ok`, `authorized`), or rejects
   * with the `error` reply as a {@link TetherError}.
   */
  request(frame: ClientFrame, policy: DeliveryPolicy, idempotent = false): Promise<ServerFrame> {
    return new Promise<ServerFrame>((resolve, reject) => {
      const pending: Pending = { frame, policy, idempotent, resolve, reject };
      if (this._state === 'closed') {
        reject(new TetherError(ErrorCodes.ClientClosed, 'client closed'));
      } else if (this._state === 'failed') {
        reject(this.failure ?? new TetherError(ErrorCodes.Unauthorized, 'connection failed'));
      } else if (this._state === 'connected') {
        // Attaches may overtake queued mutations (order between them does
        // not matter); everything else keeps its place behind the queue.
        if (policy === 'transient' || this.outbox.length === 0) this.write(pending);
        else this.outbox.push(pending);
      } else if (policy === 'transient') {
        reject(new TetherError(ErrorCodes.NetworkError, 'not connected'));
      } else {
        this.outbox.push(pending);
        this.connect();
      }
    });
  }

  /**
   * Closes for good: no reconnect; every pending request is rejected with
   * `ClientClosed`. The close is clean, so the server drops the connection's
   * presence at once and forgets it (it cannot be resumed).
   */
  close(): void {
    if (this._state === 'closed') return;
    const g = globalThis as { removeEventListener?: (t: string, l: () => void) => void };
    g.removeEventListener?.('online', this.onOnline);
    clearTimeout(this.reconnectTimer);
    clearTimeout(this.renewTimer);
    this.abandonSocket(1000, 'client closed');
    this.rejectAll(new TetherError(ErrorCodes.ClientClosed, 'client closed'));
    this.session = undefined;
    this.opts.session?.save(undefined);
    this.setState('closed');
  }

  private setState(state: ConnectionState): void {
    if (this._state === state) return;
    this._state = state;
    this.emit('state', state);
  }

  private connectNow(): void {
    clearTimeout(this.reconnectTimer);
    this.reconnectTimer = undefined;
    this.setState('connecting');
    // Two attempts in a row that never got `connected` may be a refused
    // (expired or revoked) token: a browser cannot see the HTTP 401.
    if (this.failedAttempts >= 2) this.opts.auth.invalidate();
    this.opts.auth.token().then(
      (token) => {
        if (this._state !== 'connecting') return;
        this.open(token);
      },
      (err: unknown) => {
        if (this._state !== 'connecting') return;
        this.emit('error', new TetherError(ErrorCodes.Unauthorized, `authCallback failed: ${String(err)}`));
        this.failedAttempts++;
        this.handleDrop(undefined);
      },
    );
  }

  private open(token: string | undefined): void {
    let socket: WebSocketLike;
    try {
      socket = new this.opts.WebSocket(wsUrl(this.opts.url, this.opts.auth.query(token), this.opts.rollupMs));
    } catch (err) {
      this.emit('error', new TetherError(ErrorCodes.NetworkError, `cannot open WebSocket: ${String(err)}`));
      this.failedAttempts++;
      this.handleDrop(undefined);
      return;
    }
    this.socket = socket;
    this.fresh = undefined;
    this.resumeReq = undefined;
    this.socketError = undefined;
    socket.onmessage = (ev: { data: unknown }) => this.onData(ev.data);
    socket.onclose = (ev: { code?: number; reason?: string }) => {
      if (this.socket === socket) {
        this.socket = undefined;
        this.handleDrop(ev.code);
      }
    };
    socket.onerror = () => {
      /* a close event always follows */
    };
    this.lastActivity = Date.now();
    this.silenceMs = this.opts.connectTimeoutMs ?? 15000;
    this.armWatchdog();
  }

  private onData(data: unknown): void {
    this.lastActivity = Date.now();
    const text = typeof data === 'string' ? data : new TextDecoder().decode(data as ArrayBuffer);
    const frame = parseServerFrame(text);
    if (!frame) {
      this.emit('error', new TetherError(ErrorCodes.ProtocolError, 'unreadable frame from server'));
      return;
    }
    if (frame.type === 'connected') {
      this.onConnected(frame);
      return;
    }
    const req = 'req' in frame ? frame.req : undefined;
    if (req !== undefined && req === this.resumeReq) {
      this.resumeReq = undefined;
      if (frame.type === 'resumed') this.finishHandshake(frame, undefined);
      else this.finishHandshake(undefined, frame.type === 'error' ? TetherError.from(frame) : new TetherError(ErrorCodes.ProtocolError, `unexpected reply to resume: ${frame.type}`));
      return;
    }
    this.emit('frame', frame);
    if (req !== undefined) {
      const pending = this.inflight.get(req);
      if (pending) {
        this.inflight.delete(req);
        if (frame.type === 'error') pending.reject(TetherError.from(frame));
        else pending.resolve(frame);
      }
    } else if (frame.type === 'error') {
      const err = TetherError.from(frame);
      this.socketError = err;
      if (err.code === ErrorCodes.TokenExpired) this.opts.auth.invalidate();
      this.emit('error', err);
    }
  }

  private onConnected(frame: Extract<ServerFrame, { type: 'connected' }>): void {
    this.fresh = frame;
    this.failedAttempts = 0;
    const heartbeatMs = frame.heartbeat_ms ?? 15000;
    this.silenceMs = this.opts.silenceTimeoutMs ?? heartbeatMs * 2 + 1000;
    this.armWatchdog();
    const s = this.session;
    if (s && frame.resume_key !== undefined && Date.now() - (s.droppedAt ?? s.aliveAt) < s.ttlMs) {
      // The resume must be the first frame on the socket: nothing else is
      // written until its reply (requests wait in the outbox).
      const req = this.nextReq++;
      this.resumeReq = req;
      const positions = this.opts.positions?.() ?? {};
      this.socket?.send(
        JSON.stringify({ type: 'resume', req, connection_id: s.connectionId, resume_key: s.resumeKey, positions }),
      );
      return;
    }
    this.finishHandshake(undefined, undefined);
  }

  /**
   * The socket is usable: as the resumed connection (`resumed`), or as a new
   * one (no resume tried, or `resumeError`).
   */
  private finishHandshake(resumed: Extract<ServerFrame, { type: 'resumed' }> | undefined, resumeError: TetherError | undefined): void {
    const fresh = this.fresh;
    if (!fresh) return;
    const ttlMs = fresh.resume_ttl_ms ?? this.session?.ttlMs ?? 0;
    const limbo = this.limbo.sort((a, b) => (a.order ?? 0) - (b.order ?? 0));
    this.limbo = [];
    const requeue: Pending[] = [];
    if (resumed) {
      this.session = { connectionId: resumed.connection_id, resumeKey: resumed.resume_key, ttlMs, seq: this.seqReserved, aliveAt: Date.now() };
      // Same connection: every in-flight request is re-sent, mutations with
      // their original seq, so each is applied (and answered) once.
      requeue.push(...limbo);
    } else {
      this.session =
        fresh.resume_key !== undefined
          ? { connectionId: fresh.connection_id, resumeKey: fresh.resume_key, ttlMs, seq: this.seqReserved, aliveAt: Date.now() }
          : undefined;
      for (const p of limbo) {
        if (p.policy === 'resend' || (p.policy === 'sequenced' && p.idempotent)) {
          requeue.push(p);
        } else {
          p.reject(
            new TetherError(
              ErrorCodes.OutcomeUnknown,
              `the connection dropped before the reply and could not be resumed${resumeError ? ` (${resumeError.message})` : ''}; the ${p.frame.type} may or may not have been applied`,
            ),
          );
        }
      }
    }
    this.outbox = [...requeue, ...this.outbox];
    this.opts.session?.save(this.sessionRecord());
    this.info = {
      connectionId: this.session?.connectionId ?? fresh.connection_id,
      clientId: fresh.client_id,
      heartbeatMs: fresh.heartbeat_ms ?? 15000,
      idleTimeoutMs: fresh.idle_timeout_ms,
      limits: fresh.limits ?? {},
      resumed: resumed !== undefined,
      attachments: resumed?.attachments ?? [],
      resumeError,
    };
    this.attempt = 0;
    this.setState('connected');
    this.emit('connected', this.info);
    // Queued requests go after the re-attaches made by 'connected' listeners;
    // requests made meanwhile were appended to the queue, so order holds.
    while (this._state === 'connected' && this.outbox.length > 0) {
      this.write(this.outbox.shift() as Pending);
    }
    this.scheduleRenewal();
  }

  private write(pending: Pending): void {
    const req = this.nextReq++;
    const wire: Record<string, unknown> = { ...pending.frame, req };
    if (pending.policy === 'sequenced') {
      pending.seq ??= this.takeSeq();
      wire['seq'] = pending.seq;
    }
    pending.order ??= this.writes++;
    const text = JSON.stringify(wire);
    const max = this.info?.limits.max_frame_bytes;
    if (max !== undefined && text.length * 3 > max && utf8Length(text) > max) {
      pending.reject(
        new TetherError(ErrorCodes.FrameTooLarge, `frame of ${utf8Length(text)} bytes is over the server's limit of ${max}`),
      );
      return;
    }
    this.inflight.set(req, pending);
    this.socket?.send(text);
  }

  /** The next `seq`; storage holds a reservation ahead of it so a reloaded page never reuses one. */
  private takeSeq(): number {
    this.seq++;
    if (this.seq > this.seqReserved) {
      this.seqReserved = this.seq + SEQ_BLOCK;
      if (this.session) this.opts.session?.save(this.sessionRecord());
    }
    return this.seq;
  }

  private scheduleRenewal(): void {
    clearTimeout(this.renewTimer);
    this.renewTimer = undefined;
    if (this._state !== 'connected') return;
    const delay = this.opts.auth.renewDelay();
    if (delay === undefined) return;
    this.renewTimer = setTimeout(() => void this.renewOnLive(), delay);
  }

  /** Renews the token and sends it on the live connection; attachments continue. */
  private async renewOnLive(): Promise<void> {
    if (this._state !== 'connected') return;
    try {
      const token = await this.opts.auth.renew();
      if (this._state !== 'connected' || !token) return;
      const reply = await this.request({ type: 'auth', token }, 'transient');
      if (reply.type === 'authorized') this.opts.auth.noteExpiry(reply.expires_at);
      this.scheduleRenewal();
    } catch (err) {
      if (this._state !== 'connected') return;
      const e = err instanceof TetherError ? err : new TetherError(ErrorCodes.Unauthorized, `authCallback failed: ${String(err)}`);
      this.emit('error', e);
      if (e.code === ErrorCodes.TokenExpired) this.opts.auth.invalidate();
      // Try again shortly; if the token expires first, the server closes
      // with 4005 and the next socket renews and resumes.
      clearTimeout(this.renewTimer);
      this.renewTimer = setTimeout(() => void this.renewOnLive(), 1000);
    }
  }

  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    const due = this.lastActivity + this.silenceMs - Date.now();
    this.watchdog = setTimeout(() => {
      if (!this.socket) return;
      if (Date.now() - this.lastActivity >= this.silenceMs) {
        // The server (or the path to it) is dead: don't wait for a close
        // handshake that may never complete.
        this.emit('error', new TetherError(ErrorCodes.NetworkError, 'server silent; reconnecting'));
        if (!this.fresh) this.failedAttempts++;
        this.abandonSocket(4000, 'silent');
        this.handleDrop(undefined);
      } else {
        this.armWatchdog();
      }
    }, Math.max(due, 10));
  }

  /** Detaches from the socket and closes it without waiting for its close event. */
  private abandonSocket(code: number, reason: string): void {
    clearTimeout(this.watchdog);
    const socket = this.socket;
    this.socket = undefined;
    if (!socket) return;
    socket.onmessage = null;
    socket.onclose = null;
    socket.onerror = () => {};
    try {
      // Abandoning a socket we gave up on (silent server) must look like a
      // network drop to the server, not a clean close, or it would forget the
      // connection and drop its presence instead of keeping them for a
      // resume. Node's `ws` can cut the TCP connection; browsers can only
      // close (the frame rarely gets through a dead path anyway).
      const cut = (socket as { terminate?: () => void }).terminate;
      if (code !== 1000 && typeof cut === 'function') cut.call(socket);
      else socket.close(code, reason);
    } catch {
      /* already closing */
    }
  }

  private handleDrop(closeCode: number | undefined): void {
    clearTimeout(this.watchdog);
    clearTimeout(this.renewTimer);
    if (this._state === 'closed' || this._state === 'failed') return;
    const wasConnected = this._state === 'connected';
    if (!this.fresh && closeCode !== undefined) this.failedAttempts++;
    if (this.session && wasConnected) this.session.droppedAt = Date.now();
    const socketError = this.socketError;
    if (socketError?.code === ErrorCodes.ResumeFailed) {
      // Another client (a duplicated tab with a copy of our session) resumed
      // this connection: leave it to them and start a new one, or the two
      // would keep taking it from each other.
      this.session = undefined;
      this.opts.session?.save(undefined);
    }
    if (closeCode === EXPIRED_CLOSE || socketError?.code === ErrorCodes.TokenExpired) this.opts.auth.invalidate();
    const clientFault = closeCode !== undefined && CLIENT_FAULT_CLOSE.has(closeCode) && socketError?.code !== ErrorCodes.ResumeFailed;
    const inflight = [...this.inflight.values()];
    this.inflight.clear();
    for (const pending of inflight) {
      if (clientFault) {
        pending.reject(new TetherError(ErrorCodes.BadRequest, `server closed the connection (${closeCode}) while this was in flight`));
      } else if (pending.policy === 'sequenced' || pending.policy === 'resend') {
        this.limbo.push(pending);
      } else if (pending.policy === 'at-most-once') {
        pending.reject(
          new TetherError(ErrorCodes.OutcomeUnknown, 'connection dropped before the reply; the operation may or may not have been applied'),
        );
      } else {
        pending.reject(new TetherError(ErrorCodes.NetworkError, 'connection dropped'));
      }
    }
    this.fresh = undefined;
    this.resumeReq = undefined;
    if (closeCode !== undefined && AUTH_CLOSE.has(closeCode) && !this.opts.auth.canRenew) {
      this.failure = new TetherError(
        closeCode === 4003 ? ErrorCodes.Unauthorized : ErrorCodes.Forbidden,
        'the server refused the credential',
      );
      this.rejectAll(this.failure);
      this.setState('failed');
      return;
    }
    if (closeCode !== undefined && AUTH_CLOSE.has(closeCode)) this.opts.auth.invalidate();
    if (wasConnected) this.attempt = 0;
    this.setState('disconnected');
    const delay = backoffDelay(this.attempt++, this.opts.reconnect);
    this.reconnectTimer = setTimeout(() => this.connectNow(), delay);
  }

  private rejectAll(err: TetherError): void {
    const all = [...this.inflight.values(), ...this.limbo, ...this.outbox];
    this.inflight.clear();
    this.limbo = [];
    this.outbox = [];
    for (const pending of all) pending.reject(err);
  }
}
