/** Small helpers shared by the transports. */

/**
 * A random message id for idempotent publish. `crypto.randomUUID` only
 * exists in secure contexts, so fall back to `getRandomValues`, which is
 * everywhere (browsers, Node 20).
 */
export function generateId(): string {
  const c = globalThis.crypto;
  if (typeof c?.randomUUID === 'function') return c.randomUUID();
  const bytes = new Uint8Array(16);
  c.getRandomValues(bytes);
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

/** Reconnect timing. */
export interface BackoffOptions {
  /** First retry delay in ms (default 500). */
  initialDelayMs?: number;
  /** Cap in ms (default 15000). */
  maxDelayMs?: number;
}

/**
 * Exponential backoff with "equal jitter": half the step is fixed, half
 * random. Jitter spreads a herd of clients reconnecting after a server
 * restart; the fixed half keeps a failing server from being hammered by
 * near-zero delays.
 */
export function backoffDelay(attempt: number, opts: BackoffOptions = {}): number {
  const initial = opts.initialDelayMs ?? 500;
  const max = opts.maxDelayMs ?? 15000;
  const step = Math.min(max, initial * 2 ** Math.min(attempt, 30));
  return step / 2 + Math.random() * (step / 2);
}

/** `http(s)://host[:port][/prefix]` from any of http, https, ws, wss; no trailing slash. */
export function httpBase(url: string): string {
  const u = new URL(url);
  if (u.protocol === 'ws:') u.protocol = 'http:';
  else if (u.protocol === 'wss:') u.protocol = 'https:';
  let path = u.pathname.replace(/\/+$/, '');
  if (path.endsWith('/ws')) path = path.slice(0, -3);
  return `${u.protocol}//${u.host}${path}`;
}

/**
 * The WebSocket endpoint for a base URL. `credential` is a token, or query
 * parameters such as `{token}` or `{key, client_id}`.
 */
export function wsUrl(base: string, credential?: string | Record<string, string>, rollupMs?: number): string {
  const u = new URL(`${httpBase(base)}/ws`);
  u.protocol = u.protocol === 'https:' ? 'wss:' : 'ws:';
  const params = typeof credential === 'string' ? { token: credential } : (credential ?? {});
  for (const [k, v] of Object.entries(params)) if (v) u.searchParams.set(k, v);
  if (rollupMs !== undefined) u.searchParams.set('rollup_ms', String(rollupMs));
  return u.toString();
}

/** Path segment for a channel name or serial. */
export function seg(s: string): string {
  return encodeURIComponent(s);
}

/** UTF-8 byte length, for checking frames against the server's limit before sending. */
export function utf8Length(s: string): number {
  return new TextEncoder().encode(s).length;
}
