/**
 * The entry point: one client per server, holding one transport (a
 * multiplexed WebSocket, or SSE+REST), the channels, and their persistence.
 */

import { Auth } from './auth.js';
import { Channel, type ChannelBackend, type ChannelContext, type ChannelOptions } from './channel.js';
import { type ConnectedInfo, Connection } from './connection.js';
import { Emitter } from './emitter.js';
import { ErrorCodes, TetherError } from './errors.js';
import { RestClient, toAck } from './rest.js';
import { SseBackend } from './sse.js';
import { Persistence } from './storage.js';
import type {
  Ack,
  ConnectionState,
  EventSourceConstructor,
  Mutation,
  Serial,
  ServerFrame,
  StorageLike,
  WebSocketConstructor,
} from './types.js';
import { type BackoffOptions, httpBase } from './util.js';

/** `EPOCH-SEQUENCE`, 13 and 16 digits. */
const SERIAL = /^\d{13}-\d{16}$/;

/** Options of a {@link TetherClient}. */
export interface ClientOptions {
  /** Server base URL, e.g. `https://tether.example.com` (ws/wss also accepted). */
  url: string;
  /**
   * `WebSocket` constructor. Defaults to the global one (browsers, Node 22+);
   * on Node 20 pass `WebSocket` from the `ws` package.
   */
  WebSocket?: WebSocketConstructor;
  /**
   * `websocket`, `sse` (Server-Sent Events to receive, REST to send), or
   * `auto` (default): WebSocket when a constructor is available, else SSE.
   */
  transport?: 'websocket' | 'sse' | 'auto';
  /**
   * Where to keep each channel's position and view so a reloaded page
   * resumes instead of replaying: `true` (default) uses `sessionStorage`
   * when it exists, `false` disables, or pass any Storage.
   */
  persist?: boolean | StorageLike;
  /**
   * Append roll-up window (ms) asked of the server: fragments of a streaming
   * message arriving within the window come as one event. The folded view is
   * identical; only the number of events changes. Default: the server's
   * (40 ms); 0 delivers every fragment.
   */
  rollupMs?: number;
  /** A fixed token, sent as the `token` query parameter (WebSocket, SSE) and as a Bearer header (REST). It cannot be renewed. */
  token?: string;
  /**
   * Returns a fresh token (typically from your back end, which mints it
   * with `POST /keys/{key}/tokens`). Called when a token is first needed,
   * before the current one expires (its `exp`, or the server's
   * `authorized.expires_at`: the new token is sent on the live connection
   * with no reconnect), and after the server refuses or expires one.
   * Takes precedence over `token`.
   */
  authCallback?: () => string | Promise<string>;
  /**
   * An API key `name:secret`, sent as `?key=` (WebSocket, SSE) and as HTTP
   * Basic auth (REST). **For trusted back ends (Node) only**: anything a
   * browser holds is public, so browsers must use tokens.
   */
  key?: string;
  /** With `key`: the client id the back end acts for. */
  clientId?: string;
  /** Rewind for a fresh attach, so a late joiner sees the conversation (default 100, max 1000). */
  rewind?: number;
  /** Reconnect backoff (defaults: 500 ms initial, 15 s cap, with jitter). */
  reconnect?: BackoffOptions;
  /** Connect immediately (default true) rather than on first use. */
  autoConnect?: boolean;
  /** `fetch` implementation (default: global). */
  fetch?: typeof fetch;
  /** `EventSource` constructor for the SSE transport (default: global if any, else a fetch-based reader). */
  EventSource?: EventSourceConstructor;
  /** WebSocket: treat the server as dead after this much silence (default: 2 × heartbeat + 1 s). */
  silenceTimeoutMs?: number;
  /** SSE: treat a stream as dead after this much silence (default 45 s). */
  sseSilenceMs?: number;
}

/** Events of a {@link TetherClient}. */
export interface ClientEvents extends Record<string, unknown> {
  /** Every state change. */
  state: ConnectionState;
  connecting: void;
  connected: void;
  disconnected: void;
  closed: void;
  failed: void;
  /** Connection-level errors (channel errors go to the channel). */
  error: TetherError;
  /** After a drop, the new socket resumed the connection: presence, channels and in-flight mutations carried over. */
  resumed: { connectionId: string };
  /** After a drop, the connection could not be resumed (41001): channels were re-attached by position and presence re-entered. */
  'resume-failed': TetherError;
}

/**
 * A Tether client. Create one per server and page:
 *
 * ```ts
 * const client = new TetherClient({ url: 'https://tether.example.com' });
 * const chat = client.channel('conversation:42');
 * chat.onMessages((messages) => render(messages));
 * ```
 */
export class TetherClient extends Emitter<ClientEvents> {
  /** Stateless HTTP calls (history, get message, publish without a socket). */
  readonly rest: RestClient;
  /** The transport in use. */
  readonly transport: 'websocket' | 'sse';
  private readonly channels = new Map<string, Channel>();
  private readonly connection: Connection | undefined;
  private readonly sse: SseBackend | undefined;
  private readonly persistence: Persistence | undefined;
  private readonly backend: ChannelBackend;
  private readonly defaultRewind: number;
  private readonly auth: Auth;
  private _state: ConnectionState = 'initialized';

  constructor(opts: ClientOptions) {
    super();
    const authOpts: ConstructorParameters<typeof Auth>[0] = {};
    if (opts.token !== undefined) authOpts.token = opts.token;
    if (opts.authCallback) authOpts.authCallback = opts.authCallback;
    if (opts.key !== undefined) authOpts.key = opts.key;
    if (opts.clientId !== undefined) authOpts.clientId = opts.clientId;
    this.auth = new Auth(authOpts);
    const restOpts: ConstructorParameters<typeof RestClient>[0] = { url: opts.url, auth: this.auth };
    if (opts.fetch) restOpts.fetch = opts.fetch;
    this.rest = new RestClient(restOpts);
    this.defaultRewind = opts.rewind ?? 100;
    this.persistence = makePersistence(opts.persist, `tether:${httpBase(opts.url)}:`);

    const WS = opts.WebSocket ?? (globalThis as { WebSocket?: WebSocketConstructor }).WebSocket;
    const mode = opts.transport ?? 'auto';
    if (mode === 'websocket' && !WS) {
      throw new TetherError(ErrorCodes.NetworkError, 'no WebSocket available: pass the WebSocket option (e.g. from the ws package)');
    }
    this.transport = mode === 'sse' || !WS ? 'sse' : 'websocket';

    if (this.transport === 'websocket' && WS) {
      const persistence = this.persistence;
      const connOpts: ConstructorParameters<typeof Connection>[0] = {
        url: opts.url,
        WebSocket: WS,
        auth: this.auth,
        positions: () => this.positions(),
      };
      if (persistence) connOpts.session = { load: () => persistence.loadSession(), save: (r) => persistence.saveSession(r) };
      if (opts.reconnect) connOpts.reconnect = opts.reconnect;
      if (opts.silenceTimeoutMs !== undefined) connOpts.silenceTimeoutMs = opts.silenceTimeoutMs;
      if (opts.rollupMs !== undefined) connOpts.rollupMs = opts.rollupMs;
      const connection = new Connection(connOpts);
      this.connection = connection;
      persistence?.setSessionSource(() => connection.sessionRecord());
      this.backend = this.websocketBackend(connection);
      connection.on('state', (s) => this.setState(s));
      connection.on('error', (e) => this.emit('error', e));
      connection.on('frame', (f) => this.route(f));
      connection.on('connected', (info) => this.onConnected(connection, info));
      if (opts.autoConnect !== false) connection.connect();
    } else {
      const sseOpts: ConstructorParameters<typeof SseBackend>[0] = {
        url: opts.url,
        rest: this.rest,
        onState: (s) => this.setState(s),
      };
      const ES = opts.EventSource ?? (globalThis as { EventSource?: EventSourceConstructor }).EventSource;
      if (ES) sseOpts.EventSource = ES;
      if (opts.fetch) sseOpts.fetch = opts.fetch;
      sseOpts.auth = this.auth;
      if (opts.reconnect) sseOpts.reconnect = opts.reconnect;
      if (opts.sseSilenceMs !== undefined) sseOpts.silenceMs = opts.sseSilenceMs;
      if (opts.rollupMs !== undefined) sseOpts.rollupMs = opts.rollupMs;
      this.sse = new SseBackend(sseOpts);
      this.backend = this.sse;
    }
  }

  /** Connection state (for SSE: `connected` only while every attached channel's stream is open). */
  get state(): ConnectionState {
    return this._state;
  }

  /**
   * The channel named `name` (one object per name, so listeners and the view
   * are shared). Its saved view and position, if any, are restored at once.
   * `rewind` sets how many recent messages a fresh attach loads (set it
   * here, before `subscribe`/`onMessages` attach implicitly).
   */
  channel(name: string, opts: ChannelOptions = {}): Channel {
    let ch = this.channels.get(name);
    if (!ch) {
      const ctx: ChannelContext = {
        backend: this.backend,
        rest: this.rest,
        persistence: this.persistence,
        defaultRewind: this.defaultRewind,
        isClosed: () => this._state === 'closed',
      };
      ch = new Channel(name, ctx);
      this.channels.set(name, ch);
    }
    if (opts.rewind !== undefined) ch._setRewind(opts.rewind);
    if (opts.presence) ch._setPresence();
    return ch;
  }

  /** The current connection's id (WebSocket, while connected): the `connection_id` on your messages and presence. */
  get connectionId(): string | undefined {
    return this.connection?.connectedInfo?.connectionId;
  }

  /** The client id the server knows this connection by (from the credential), while connected. */
  get clientId(): string | undefined {
    return this.connection?.connectedInfo?.clientId;
  }

  /** Round trip to the server in ms (WebSocket only): a liveness check for the app. */
  async ping(): Promise<number> {
    if (!this.connection) throw new TetherError(ErrorCodes.BadRequest, 'ping needs the WebSocket transport');
    const t0 = Date.now();
    await this.connection.request({ type: 'ping' }, 'transient');
    return Date.now() - t0;
  }

  /**
   * Closes the transport for good and saves every channel's state. Requests
   * still pending reject with `ClientClosed` (80000).
   */
  close(): void {
    if (this._state === 'closed') return;
    this.persistence?.flush();
    this.connection?.close();
    this.sse?.close();
    for (const ch of this.channels.values()) ch._onClosed();
    this.persistence?.close();
    this.setState('closed');
  }

  private setState(state: ConnectionState): void {
    if (this._state === state || this._state === 'closed') return;
    this._state = state;
    if (state === 'disconnected') for (const ch of this.channels.values()) ch._onSuspended();
    this.emit('state', state);
    if (state !== 'initialized') this.emit(state, undefined);
  }

  private websocketBackend(connection: Connection): ChannelBackend {
    return {
      attach: (ch) => {
        if (connection.state === 'connected') this.sendAttach(connection, ch);
        else connection.connect();
      },
      detach: async (ch) => {
        if (connection.state !== 'connected') return;
        try {
          await connection.request({ type: 'detach', channel: ch.name }, 'transient');
        } catch {
          /* a dropped connection detaches too */
        }
      },
      mutate: async (m: Mutation): Promise<Ack> => {
        // Sequenced: exactly once across a connection resume. A publish
        // always has an id, so it is also safe to re-send on a new connection.
        const reply = await connection.request(m, 'sequenced', m.type === 'publish');
        if (reply.type !== 'ack') throw new TetherError(ErrorCodes.ProtocolError, `expected ack, got ${reply.type}`);
        return toAck(reply);
      },
      presence: async (channel, action, data) => {
        const frame: Parameters<Connection['request']>[0] =
          action === 'leave' ? { type: 'presence', channel, action } : { type: 'presence', channel, action, data: data ?? null };
        await connection.request(frame, 'resend');
      },
      ephemeral: async (channel, message) => {
        await connection.request({ type: 'publish', channel, ephemeral: true, message }, 'at-most-once');
      },
    };
  }

  /**
   * The last position of every channel, for a connection resume. Only
   * well-formed serials: one bad position makes the server refuse the whole
   * resume (40003).
   */
  private positions(): Record<string, Serial> {
    const out: Record<string, Serial> = {};
    for (const ch of this.channels.values()) {
      if (ch.position !== undefined && SERIAL.test(ch.position)) out[ch.name] = ch.position;
    }
    return out;
  }

  /**
   * A socket is ready. Resumed: the server re-attached the old connection's
   * channels from our positions and kept its presence, so only channels it
   * did not have are attached (and ones the app no longer wants detached).
   * Not resumed: attach every wanted channel by position and re-enter
   * presence with the last data.
   */
  private onConnected(connection: Connection, info: ConnectedInfo): void {
    const resumed = new Map(info.attachments.map((a) => [a.channel, a]));
    for (const ch of this.channels.values()) {
      const r = info.resumed ? resumed.get(ch.name) : undefined;
      if (!r) {
        if (ch._wanted) this.sendAttach(connection, ch);
      } else if (!ch._wanted) {
        this.sendDetach(connection, ch.name);
      } else if (ch.position === undefined) {
        // Attached fresh and dropped before its first position: the server
        // would replay the whole log; restart it with the rewind instead.
        this.sendAttach(connection, ch);
      } else if (ch.presenceEnabled && r.presence === false) {
        // Re-attached only from our position (the old socket never took
        // the attach), so without presence: attach again with it.
        this.sendAttach(connection, ch);
      }
    }
    for (const name of resumed.keys()) if (!this.channels.has(name)) this.sendDetach(connection, name);
    if (!info.resumed) for (const ch of this.channels.values()) ch.presence._reenter();
    if (info.resumed) this.emit('resumed', { connectionId: info.connectionId });
    else if (info.resumeError) this.emit('resume-failed', info.resumeError);
  }

  private sendDetach(connection: Connection, channel: string): void {
    connection.request({ type: 'detach', channel }, 'transient').catch(() => undefined);
  }

  private sendAttach(connection: Connection, ch: Channel): void {
    const params = ch._resumeParams();
    connection.request({ type: 'attach', channel: ch.name, ...params }, 'transient').catch((err: unknown) => {
      const e = err instanceof TetherError ? err : new TetherError(ErrorCodes.ProtocolError, String(err));
      if (e.code === ErrorCodes.NetworkError || e.code === ErrorCodes.ClientClosed) return; // re-attached on reconnect
      ch._onAttachFailed(e);
    });
  }

  /** Routes channel frames synchronously: an `attached` must be handled before the frames after it. */
  private route(frame: ServerFrame): void {
    switch (frame.type) {
      case 'attached':
        this.channels.get(frame.channel)?._onAttached(frame.continuity, frame.error ? TetherError.from(frame.error) : undefined);
        break;
      case 'message':
        this.channels.get(frame.channel)?._onMessage(frame.message, frame.position);
        break;
      case 'synced':
        this.channels.get(frame.channel)?._onSynced(frame.position);
        break;
      case 'detached':
        // A reply to our own detach (it has `req`) is handled by the request.
        if (frame.req === undefined) {
          this.channels.get(frame.channel)?._onDetached();
        }
        break;
      case 'presence-sync':
        this.channels.get(frame.channel)?._onPresenceSync(frame.members ?? [], frame.complete !== false);
        break;
      case 'presence':
        this.channels.get(frame.channel)?._onPresence(frame.action, frame.member);
        break;
      case 'ephemeral':
        this.channels.get(frame.channel)?._onEphemeral(frame.message);
        break;
      case 'error':
        // A channel-level error without a request (e.g. a renewed token no
        // longer grants subscribe): tell the channel.
        if (frame.req === undefined && frame.channel) this.channels.get(frame.channel)?._onError(TetherError.from(frame));
        break;
      default:
        break;
    }
  }
}

function makePersistence(persist: ClientOptions['persist'], prefix: string): Persistence | undefined {
  if (persist === false) return undefined;
  if (persist && persist !== true) return new Persistence(persist, prefix);
  try {
    const s = (globalThis as { sessionStorage?: StorageLike }).sessionStorage;
    return s ? new Persistence(s, prefix) : undefined;
  } catch {
    return undefined; // sandboxed iframes throw on access
  }
}
