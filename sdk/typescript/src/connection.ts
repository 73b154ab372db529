/**
 * One WebSocket to the server, kept alive: reconnect with exponential
 * backoff and jitter, detection of a silent (dead) server through the
 * `heartbeat` frames, and request/reply correlation by `req` so many
 * requests can be in flight at once (the server applies and answers one
 * connection's frames in order).
 *
 * What happens to a request when the socket drops depends on whether it is
 * safe to send twice (its {@link DeliveryPolicy}).
 */

import { Emitter } from './emitter.js';
import { ErrorCodes, TetherError } from './errors.js';
import type {
  ClientFrame,
  ConnectionState,
  ServerFrame,
  ServerLimits,
  WebSocketConstructor,
  WebSocketLike,
} from './types.js';
import { backoffDelay, type BackoffOptions, utf8Length, wsUrl } from './util.js';

/**
 * What to do with a request that was written to a socket which then dropped
 * before the reply came:
 * - `resend`: send it again on the next connection (idempotent: publishes
 *   carry an `id` the server deduplicates);
 * - `at-most-once`: reject with `OutcomeUnknown` (80001); protocol v1 gives
 *   mutations no idempotency key, so a resend could apply it twice;
 * - `transient`: only meaningful on this connection (attach, detach, ping);
 *   reject, and never queue it while disconnected: the owner re-issues it.
 * Requests made while disconnected and never written are queued and sent in
 * order on reconnect, whatever their policy (except `transient`).
 */
export type DeliveryPolicy = 'resend' | 'at-most-once' | 'transient';

/** What the server said in its `connected` frame. */
export interface ConnectedInfo {
  connectionId: string;
  heartbeatMs: number;
  idleTimeoutMs: number | undefined;
  limits: ServerLimits;
}

/** Events of a {@link Connection}. */
export interface ConnectionEvents extends Record<string, unknown> {
  state: ConnectionState;
  /** A fresh connection is ready: re-attach channels now, before the outbox flushes. */
  connected: ConnectedInfo;
  /** Every frame after `connected`, including replies, for routing to channels. */
  frame: ServerFrame;
  /** A connection-level error (an `error` frame without `req`, or a refused connect). */
  error: TetherError;
}

/** Options of a {@link Connection}. */
export interface ConnectionOptions {
  /** Server base URL (http, https, ws or wss). */
  url: string;
  /** Append roll-up window asked of the server (ms; 0 = every fragment). */
  rollupMs?: number;
  WebSocket: WebSocketConstructor;
  /** Called before every connect attempt; its result is sent as the `token` query parameter. */
  getToken?: () => Promise<string | undefined>;
  /** Whether a refused credential (close 4003) may be retried with a fresh token. */
  canRenewToken?: boolean;
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
  resolve: (frame: ServerFrame) => void;
  reject: (err: TetherError) => void;
}

/** Close codes after which retrying the same frames would fail the same way. */
const CLIENT_FAULT_CLOSE = new Set([4000, 4009]);
const AUTH_CLOSE = new Set([4003, 4004]);

/** A self-healing WebSocket with pipelined requests. See the module doc. */
export class Connection extends Emitter<ConnectionEvents> {
  private _state: ConnectionState = 'initialized';
  private socket: WebSocketLike | undefined;
  private readonly inflight = new Map<number, Pending>();
  private outbox: Pending[] = [];
  private nextReq = 1;
  private attempt = 0;
  private reconnectTimer: ReturnType<typeof setTimeout> | undefined;
  private watchdog: ReturnType<typeof setTimeout> | undefined;
  private lastActivity = 0;
  private silenceMs = 0;
  private info: ConnectedInfo | undefined;
  private failure: TetherError | undefined;
  private readonly onOnline = (): void => {
    if (this._state === 'disconnected') this.connectNow();
  };

  constructor(private readonly opts: ConnectionOptions) {
    super();
    const g = globalThis as { addEventListener?: (t: string, l: () => void) => void };
    g.addEventListener?.('online', this.onOnline);
  }

  /** Current state. */
  get state(): ConnectionState {
    return this._state;
  }

  /** The server's `connected` frame for the current connection, if connected. */
  get connectedInfo(): ConnectedInfo | undefined {
    return this._state === 'connected' ? this.info : undefined;
  }

  /** Starts connecting if not yet started; idempotent. */
  connect(): void {
    if (this._state === 'initialized') this.connectNow();
  }

  /**
   * Sends `frame` with a fresh `req` and resolves with the server's reply
   * (`ack`, `attached`, `detached`, `pong`), or rejects with the `error`
   * reply as a {@link TetherError}.
   */
  request(frame: ClientFrame, policy: DeliveryPolicy): Promise<ServerFrame> {
    return new Promise<ServerFrame>((resolve, reject) => {
      const pending: Pending = { frame, policy, resolve, reject };
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

  /** Closes for good: no reconnect; every pending request is rejected with `ClientClosed`. */
  close(): void {
    if (this._state === 'closed') return;
    const g = globalThis as { removeEventListener?: (t: string, l: () => void) => void };
    g.removeEventListener?.('online', this.onOnline);
    clearTimeout(this.reconnectTimer);
    this.abandonSocket(1000, 'client closed');
    this.rejectAll(new TetherError(ErrorCodes.ClientClosed, 'client closed'));
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
    const started = this.opts.getToken ? this.opts.getToken() : Promise.resolve(undefined);
    started.then(
      (token) => {
        if (this._state !== 'connecting') return;
        this.open(token);
      },
      (err: unknown) => {
        if (this._state !== 'connecting') return;
        this.emit('error', new TetherError(ErrorCodes.Unauthorized, `authCallback failed: ${String(err)}`));
        this.handleDrop(undefined);
      },
    );
  }

  private open(token: string | undefined): void {
    let socket: WebSocketLike;
    try {
      socket = new this.opts.WebSocket(wsUrl(this.opts.url, token, this.opts.rollupMs));
    } catch (err) {
      this.emit('error', new TetherError(ErrorCodes.NetworkError, `cannot open WebSocket: ${String(err)}`));
      this.handleDrop(undefined);
      return;
    }
    this.socket = socket;
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
    let frame: ServerFrame;
    try {
      const text = typeof data === 'string' ? data : new TextDecoder().decode(data as ArrayBuffer);
      frame = JSON.parse(text) as ServerFrame;
    } catch {
      this.emit('error', new TetherError(ErrorCodes.ProtocolError, 'unreadable frame from server'));
      return;
    }
    if (frame.type === 'connected') {
      this.onConnected(frame);
      return;
    }
    this.emit('frame', frame);
    const req = 'req' in frame ? frame.req : undefined;
    if (req !== undefined) {
      const pending = this.inflight.get(req);
      if (pending) {
        this.inflight.delete(req);
        if (frame.type === 'error') pending.reject(TetherError.from(frame));
        else pending.resolve(frame);
      }
    } else if (frame.type === 'error') {
      this.emit('error', TetherError.from(frame));
    }
  }

  private onConnected(frame: Extract<ServerFrame, { type: 'connected' }>): void {
    const heartbeatMs = frame.heartbeat_ms ?? 15000;
    this.info = {
      connectionId: frame.connection_id,
      heartbeatMs,
      idleTimeoutMs: frame.idle_timeout_ms,
      limits: frame.limits ?? {},
    };
    this.attempt = 0;
    this.silenceMs = this.opts.silenceTimeoutMs ?? heartbeatMs * 2 + 1000;
    this.armWatchdog();
    this.setState('connected');
    this.emit('connected', this.info);
    // Queued requests go after the re-attaches made by 'connected' listeners;
    // requests made meanwhile were appended to the queue, so order holds.
    while (this._state === 'connected' && this.outbox.length > 0) {
      this.write(this.outbox.shift() as Pending);
    }
  }

  private write(pending: Pending): void {
    const req = this.nextReq++;
    const text = JSON.stringify({ ...pending.frame, req });
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

  private armWatchdog(): void {
    clearTimeout(this.watchdog);
    const due = this.lastActivity + this.silenceMs - Date.now();
    this.watchdog = setTimeout(() => {
      if (!this.socket) return;
      if (Date.now() - this.lastActivity >= this.silenceMs) {
        // The server (or the path to it) is dead: don't wait for a close
        // handshake that may never complete.
        this.emit('error', new TetherError(ErrorCodes.NetworkError, 'server silent; reconnecting'));
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
      socket.close(code, reason);
    } catch {
      /* already closing */
    }
  }

  private handleDrop(closeCode: number | undefined): void {
    clearTimeout(this.watchdog);
    if (this._state === 'closed' || this._state === 'failed') return;
    const wasConnected = this._state === 'connected';
    const clientFault = closeCode !== undefined && CLIENT_FAULT_CLOSE.has(closeCode);
    const resend: Pending[] = [];
    const inflight = [...this.inflight.entries()].sort((a, b) => a[0] - b[0]);
    this.inflight.clear();
    for (const [, pending] of inflight) {
      if (clientFault) {
        pending.reject(new TetherError(ErrorCodes.BadRequest, `server closed the connection (${closeCode}) while this was in flight`));
      } else if (pending.policy === 'resend') {
        resend.push(pending);
      } else if (pending.policy === 'at-most-once') {
        pending.reject(
          new TetherError(ErrorCodes.OutcomeUnknown, 'connection dropped before the reply; the operation may or may not have been applied'),
        );
      } else {
        pending.reject(new TetherError(ErrorCodes.NetworkError, 'connection dropped'));
      }
    }
    this.outbox = [...resend, ...this.outbox];
    if (closeCode !== undefined && AUTH_CLOSE.has(closeCode) && !this.opts.canRenewToken) {
      this.failure = new TetherError(
        closeCode === 4003 ? ErrorCodes.Unauthorized : ErrorCodes.Forbidden,
        'the server refused the credential',
      );
      this.rejectAll(this.failure);
      this.setState('failed');
      return;
    }
    if (wasConnected) this.attempt = 0;
    this.setState('disconnected');
    const delay = backoffDelay(this.attempt++, this.opts.reconnect);
    this.reconnectTimer = setTimeout(() => this.connectNow(), delay);
  }

  private rejectAll(err: TetherError): void {
    const all = [...this.inflight.values(), ...this.outbox];
    this.inflight.clear();
    this.outbox = [];
    for (const pending of all) pending.reject(err);
  }
}
