/**
 * The REST half of the HTTP front door: history, single messages, versions,
 * log bounds, and publish/mutate for clients that do not hold a WebSocket
 * (the SSE transport, serverless code).
 */

import type { Auth } from './auth.js';
import { ErrorCodes, TetherError } from './errors.js';
import type {
  Ack,
  AppendOptions,
  ChannelInfo,
  DeleteOptions,
  HistoryOptions,
  HistoryPage,
  Message,
  Mutation,
  NewMessage,
  Serial,
  UpdatePatch,
} from './types.js';
import { httpBase, seg } from './util.js';

/** Options of a {@link RestClient}. */
export interface RestOptions {
  /** Server base URL. */
  url: string;
  /** `fetch` implementation (default: the global one). */
  fetch?: typeof fetch;
  /** The credential: a token (sent as `Authorization: Bearer`) or a key (HTTP Basic). */
  auth?: Auth;
}

interface AckWire {
  serial: Serial;
  version_serial: Serial;
  duplicate?: boolean;
}

/** Converts the wire ack to the SDK's camelCase shape. */
export function toAck(wire: AckWire): Ack {
  return { serial: wire.serial, versionSerial: wire.version_serial, duplicate: wire.duplicate === true };
}

/** Stateless HTTP calls against one server. */
export class RestClient {
  readonly base: string;
  private readonly fetchFn: typeof fetch;

  constructor(private readonly opts: RestOptions) {
    this.base = httpBase(opts.url);
    const f = opts.fetch ?? globalThis.fetch;
    if (typeof f !== 'function') throw new TetherError(ErrorCodes.NetworkError, 'no fetch available; pass the fetch option');
    this.fetchFn = f.bind(globalThis);
  }

  /** Pages of history, fetched lazily as the iterator advances. */
  async *history(channel: string, opts: HistoryOptions = {}): AsyncGenerator<HistoryPage, void, undefined> {
    let cursor = opts.cursor;
    for (;;) {
      const q = new URLSearchParams();
      if (opts.limit !== undefined) q.set('limit', String(opts.limit));
      if (opts.direction) q.set('direction', opts.direction);
      if (cursor) q.set('cursor', cursor);
      if (opts.start) q.set('start', opts.start);
      if (opts.end) q.set('end', opts.end);
      if (opts.fromTime !== undefined) q.set('from_time', String(opts.fromTime));
      if (opts.toTime !== undefined) q.set('to_time', String(opts.toTime));
      const qs = q.toString();
      const page = await this.call<HistoryPage>('GET', `/channels/${seg(channel)}/messages${qs ? `?${qs}` : ''}`);
      const next = page.next ?? null;
      yield { messages: page.messages ?? [], next };
      if (!next) return;
      cursor = next;
    }
  }

  /** The current version of one message. */
  message(channel: string, serial: Serial): Promise<Message> {
    return this.call('GET', `/channels/${seg(channel)}/messages/${seg(serial)}`);
  }

  /** Every version of a message, oldest first. */
  async versions(channel: string, serial: Serial): Promise<Message[]> {
    const r = await this.call<{ versions: Message[] }>('GET', `/channels/${seg(channel)}/messages/${seg(serial)}/versions`);
    return r.versions ?? [];
  }

  /** The log's bounds; `position` is its head. */
  channelInfo(channel: string): Promise<ChannelInfo> {
    return this.call('GET', `/channels/${seg(channel)}`);
  }

  /** Publishes one message. */
  async publish(channel: string, message: NewMessage): Promise<Ack> {
    return toAck(await this.call<AckWire>('POST', `/channels/${seg(channel)}/messages`, message));
  }

  /** Appends a string fragment to a message. */
  async append(channel: string, serial: Serial, data: string, opts: AppendOptions = {}): Promise<Ack> {
    return toAck(await this.call<AckWire>('POST', `/channels/${seg(channel)}/messages/${seg(serial)}/append`, { ...opts, data }));
  }

  /** Makes a new version of a message. */
  async update(channel: string, serial: Serial, patch: UpdatePatch): Promise<Ack> {
    return toAck(await this.call<AckWire>('PATCH', `/channels/${seg(channel)}/messages/${seg(serial)}`, patch));
  }

  /** Replaces a message with a tombstone. */
  async delete(channel: string, serial: Serial, opts: DeleteOptions = {}): Promise<Ack> {
    return toAck(await this.call<AckWire>('DELETE', `/channels/${seg(channel)}/messages/${seg(serial)}`, opts));
  }

  /** Runs a transport-independent mutation over REST. */
  mutate(m: Mutation): Promise<Ack> {
    switch (m.type) {
      case 'publish':
        return this.publish(m.channel, m.message);
      case 'append': {
        const { type: _t, channel, serial, data, ...rest } = m;
        return this.append(channel, serial, data, rest);
      }
      case 'update': {
        const { type: _t, channel, serial, ...patch } = m;
        return this.update(channel, serial, patch);
      }
      case 'delete': {
        const { type: _t, channel, serial, ...opts } = m;
        return this.delete(channel, serial, opts);
      }
    }
  }

  /** One request; any failure becomes a {@link TetherError}. */
  async call<T>(method: string, path: string, body?: unknown): Promise<T> {
    const headers: Record<string, string> = { accept: 'application/json' };
    const auth = this.opts.auth;
    if (auth) Object.assign(headers, auth.headers(await auth.token()));
    const init: RequestInit = { method, headers };
    if (body !== undefined) {
      headers['content-type'] = 'application/json';
      init.body = JSON.stringify(body);
    }
    let res: Response;
    try {
      res = await this.fetchFn(`${this.base}${path}`, init);
    } catch (err) {
      throw new TetherError(ErrorCodes.NetworkError, `${method} ${path} failed: ${String(err)}`);
    }
    if (res.status === 401) auth?.invalidate();
    return readJson<T>(res, `${method} ${path}`);
  }
}

/** Reads a JSON body, turning `{"error":{code,message}}` (or junk) into a {@link TetherError}. */
export async function readJson<T>(res: Response, what: string): Promise<T> {
  const text = await res.text();
  let parsed: unknown;
  try {
    parsed = text ? JSON.parse(text) : undefined;
  } catch {
    parsed = undefined;
  }
  if (!res.ok) {
    const error = (parsed as { error?: unknown } | undefined)?.error;
    if (error) throw TetherError.from(error, res.status);
    throw new TetherError(res.status * 100, `${what}: HTTP ${res.status}`, res.status);
  }
  if (parsed === undefined) throw new TetherError(ErrorCodes.ProtocolError, `${what}: unreadable response`, res.status);
  return parsed as T;
}
