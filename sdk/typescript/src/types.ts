/**
 * Wire and public types for Tether protocol version 1 (docs/protocol.md).
 *
 * Field names follow the wire format (snake_case) for messages, because the
 * same objects are stored, shown and sent back; SDK-made values (acks,
 * options) use camelCase.
 */

/**
 * `EPOCH-SEQUENCE`, fixed width. Compare serials as strings (`<`, `>`):
 * string order is log order. Never do arithmetic on them.
 */
export type Serial = string;

/** What the latest operation did to a message (for an event: the operation it carries). */
export type Action = 'create' | 'append' | 'update' | 'delete';

/** Who made a version of a message, when, and why. Highest `serial` wins. */
export interface Version {
  serial: Serial;
  timestamp: number;
  client_id?: string;
  description?: string;
  metadata?: unknown;
}

/**
 * A message as stored (history, get message) and as an event on a
 * subscription. As an `append` event, `data` is only the fragment and `name`/
 * `extras` are present only if the append replaced them.
 */
export interface Message {
  serial: Serial;
  id: string;
  name?: string;
  data: unknown;
  extras?: Record<string, unknown>;
  client_id?: string;
  connection_id?: string;
  timestamp: number;
  action: Action;
  version: Version;
}

/** A new message to publish. Without `id` the SDK generates one so a resend after a drop is deduplicated. */
export interface NewMessage {
  id?: string;
  name?: string;
  data?: unknown;
  extras?: Record<string, unknown>;
}

/** Replacements carried by an append; both replace (not merge) when given. */
export interface AppendOptions {
  name?: string;
  extras?: Record<string, unknown>;
}

/** A partial new version: `name`/`data` replace, `extras` keys merge one level deep (`null` removes). */
export interface UpdatePatch {
  name?: string;
  data?: unknown;
  extras?: Record<string, unknown>;
  description?: string;
  metadata?: unknown;
}

/** Why a message was deleted (kept on the tombstone version). */
export interface DeleteOptions {
  description?: string;
  metadata?: unknown;
}

/** The server's acknowledgement of a publish or mutation. */
export interface Ack {
  /** The message's serial (for a publish: the new message). */
  serial: Serial;
  /** The serial of the version this operation made (for a duplicate publish: the original's). */
  versionSerial: Serial;
  /** True when a publish repeated an id seen within the idempotency window: nothing new was stored. */
  duplicate: boolean;
}

/** How an attach honoured the requested position. */
export type Continuity = 'new' | 'resumed' | 'lost';

/** Connection state of a client (WebSocket) or of its streams (SSE). */
export type ConnectionState = 'initialized' | 'connecting' | 'connected' | 'disconnected' | 'closed' | 'failed';

/** Options of {@link Channel.history}. Times are ms since the Unix epoch, bounds inclusive. */
export interface HistoryOptions {
  /** Page size, 1-1000 (server default 100). */
  limit?: number;
  /** `backwards` (newest first, the server default) or `forwards`. */
  direction?: 'backwards' | 'forwards';
  /** Start from a previous page's `next` cursor. */
  cursor?: string;
  /** Lowest serial (inclusive). */
  start?: Serial;
  /** Highest serial (inclusive). */
  end?: Serial;
  /** Earliest creation time (inclusive). */
  fromTime?: number;
  /** Latest creation time (inclusive). */
  toTime?: number;
}

/** One page of history: the current version of each message. */
export interface HistoryPage {
  messages: Message[];
  /** Cursor for the next page, `null` on the last one. */
  next: string | null;
}

/** The log's bounds (`GET /channels/{channel}`). */
export interface ChannelInfo {
  channel: string;
  epoch: number | null;
  first: Serial | null;
  position: Serial | null;
}

/** Server limits announced in the `connected` frame. */
export interface ServerLimits {
  max_frame_bytes?: number;
  max_message_bytes?: number;
  max_channels?: number;
  /** Sustained mutations per second of this credential (all its connections and REST requests together). */
  publish_rate_per_sec?: number;
  /** Largest burst of mutations, shared the same way. */
  publish_burst?: number;
}

/** The wire error shape. */
export interface ErrorInfo {
  code: number;
  message: string;
}

/** One presence member: a connection of a client on a channel (a user on two devices is two members). */
export interface PresenceMember {
  /** The client's identity, set by the server from its credential. */
  client_id?: string;
  /** The member's connection: the key of a member. */
  connection_id: string;
  /** Free-form; by convention `{role: 'user' | 'agent' | 'operator', status: ...}`. */
  data: unknown;
  /** When the member entered or last updated (ms since the Unix epoch). */
  timestamp: number;
}

/** What happened to a presence member. */
export type PresenceAction = 'enter' | 'update' | 'leave';

/** A change of a channel's member set. */
export interface PresenceEvent {
  action: PresenceAction;
  /** The member after the change (its last state for a `leave`). */
  member: PresenceMember;
  /**
   * True when the SDK derived this change by comparing a fresh
   * `presence-sync` with the set it held (after an attach or reconnect),
   * rather than receiving it live.
   */
  fromSync?: boolean;
}

/** A live-only message: no serial, never stored, never replayed (typing indicators, tool ticks). */
export interface EphemeralMessage {
  id: string;
  name?: string;
  data: unknown;
  extras?: Record<string, unknown>;
  client_id?: string;
  connection_id?: string;
  timestamp: number;
}

/**
 * `extras.stream` of a streamed response (docs/patterns.md). `complete`,
 * `cancelled` and `error` are terminal: the server refuses further appends
 * and status changes (40901).
 */
export type StreamStatus = 'streaming' | 'complete' | 'cancelled' | 'error';

/** A channel the server re-attached by itself after a connection resume. */
export interface ResumedAttachment {
  channel: string;
  /** Where it continues from (`null`: fresh). */
  position: Serial | null;
  /** Whether presence is delivered on it (absent from older servers). */
  presence?: boolean;
}

/** Frames the server sends on the WebSocket. */
export type ServerFrame =
  | {
      type: 'connected';
      protocol: number;
      connection_id: string;
      /** Presented with `connection_id` in a `resume` frame to carry on as this connection after a drop. */
      resume_key?: string;
      /** How long after a drop the connection can be resumed. */
      resume_ttl_ms?: number;
      client_id?: string;
      authenticated?: boolean;
      heartbeat_ms?: number;
      idle_timeout_ms?: number;
      limits?: ServerLimits;
    }
  | { type: 'attached'; req?: number; channel: string; continuity: Continuity; error?: ErrorInfo }
  | { type: 'message'; channel: string; position?: Serial; message: Message }
  /**
   * Sent once a (re)attach has caught up and events are live. Its
   * `position` (present when exact) lets a client that received nothing (an
   * empty or quiet channel) resume exactly.
   */
  | { type: 'synced'; channel: string; position?: Serial }
  /**
   * Without `req`: the server ended the attachment itself (a renewed
   * credential no longer grants subscribe), right after an `error` frame
   * naming the channel and saying why. The frame itself carries no error.
   */
  | { type: 'detached'; req?: number; channel: string }
  | { type: 'ack'; req?: number; serial: Serial; version_serial: Serial; duplicate: boolean }
  | { type: 'error'; req?: number; channel?: string; code: number; message: string }
  | { type: 'pong'; req?: number }
  | { type: 'ok'; req?: number }
  | { type: 'authorized'; req?: number; client_id?: string; expires_at?: number }
  | { type: 'resumed'; req?: number; connection_id: string; resume_key: string; attachments: ResumedAttachment[] }
  | { type: 'presence-sync'; channel: string; members: PresenceMember[]; complete: boolean }
  | { type: 'presence'; channel: string; action: PresenceAction; member: PresenceMember }
  | { type: 'ephemeral'; channel: string; message: EphemeralMessage }
  | { type: 'heartbeat' };

/** Frames the client sends (without `req`, which the connection assigns, nor `seq`). */
export type ClientFrame =
  | { type: 'attach'; channel: string; from?: Serial; rewind?: number; presence?: boolean }
  | { type: 'detach'; channel: string }
  | { type: 'publish'; channel: string; message: NewMessage; ephemeral?: boolean }
  | ({ type: 'append'; channel: string; serial: Serial; data: string } & AppendOptions)
  | ({ type: 'update'; channel: string; serial: Serial } & UpdatePatch)
  | ({ type: 'delete'; channel: string; serial: Serial } & DeleteOptions)
  | { type: 'presence'; channel: string; action: PresenceAction; data?: unknown }
  | { type: 'auth'; token?: string; key?: string; client_id?: string }
  | { type: 'resume'; connection_id: string; resume_key: string; positions: Record<string, Serial> }
  | { type: 'ping' };

/** A publish or mutation, transport-independent. */
export type Mutation =
  | { type: 'publish'; channel: string; message: NewMessage }
  | ({ type: 'append'; channel: string; serial: Serial; data: string } & AppendOptions)
  | ({ type: 'update'; channel: string; serial: Serial } & UpdatePatch)
  | ({ type: 'delete'; channel: string; serial: Serial } & DeleteOptions);

/**
 * The subset of the browser `WebSocket` the SDK uses, so the browser's, Node
 * 22's global and the `ws` package's constructors all fit.
 */
export interface WebSocketLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onmessage: ((ev: any) => void) | null;
  onclose: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  send(data: string): void;
  close(code?: number, reason?: string): void;
}

/** A `WebSocket` constructor (browser global, or `import { WebSocket } from 'ws'` on Node 20). */
export type WebSocketConstructor = new (url: string, protocols?: string | string[]) => WebSocketLike;

/** The subset of `EventSource` the SSE transport uses. */
export interface EventSourceLike {
  readonly readyState: number;
  onopen: ((ev: any) => void) | null;
  onerror: ((ev: any) => void) | null;
  addEventListener(type: string, listener: (ev: any) => void): void;
  close(): void;
}

/** An `EventSource` constructor. */
export type EventSourceConstructor = new (url: string) => EventSourceLike;

/** The subset of the Web Storage API used for persistence (`sessionStorage`, or an in-memory stand-in). */
export interface StorageLike {
  getItem(key: string): string | null;
  setItem(key: string, value: string): void;
  removeItem(key: string): void;
}
