/**
 * Credentials (docs/security.md): a fixed token, a token renewed through an
 * `authCallback` before it expires, or (back ends only) an API key.
 *
 * The SDK never verifies a token: it only reads the payload's `exp` (and
 * `iat`) to know when to renew, and the server's `authorized` frame
 * (`expires_at`) overrides that when it comes.
 */

import { ErrorCodes, TetherError } from './errors.js';

/** Credential options, shared by the WebSocket, SSE and REST paths. */
export interface AuthOptions {
  /** A fixed token. It cannot be renewed: once it expires the connection fails. */
  token?: string;
  /** Returns a fresh token; called before the current one expires (and after the server refuses one). */
  authCallback?: () => string | Promise<string>;
  /**
   * An API key `name:secret`. For trusted back ends (Node) only: a browser
   * must never hold a key; give it a token minted by your back end instead.
   */
  key?: string;
  /** With a key: the client the back end acts for (`?client_id=` / `X-Tether-Client-Id`). */
  clientId?: string;
}

/** The `exp`/`iat` claims of a JWT, in seconds, read without verifying. */
export function decodeJwtTimes(token: string): { exp?: number; iat?: number } {
  const part = token.split('.')[1];
  if (!part) return {};
  try {
    const b64 = part.replace(/-/g, '+').replace(/_/g, '/');
    const padded = b64 + '='.repeat((4 - (b64.length % 4)) % 4);
    const bin = atob(padded);
    const bytes = Uint8Array.from(bin, (c) => c.charCodeAt(0));
    const claims = JSON.parse(new TextDecoder().decode(bytes)) as { exp?: unknown; iat?: unknown };
    const out: { exp?: number; iat?: number } = {};
    if (typeof claims.exp === 'number') out.exp = claims.exp;
    if (typeof claims.iat === 'number') out.iat = claims.iat;
    return out;
  } catch {
    return {};
  }
}

function base64(text: string): string {
  const bytes = new TextEncoder().encode(text);
  let bin = '';
  for (const b of bytes) bin += String.fromCharCode(b);
  return btoa(bin);
}

/**
 * The current credential and when to renew it. One instance per client;
 * concurrent renewals are coalesced into one `authCallback` call.
 */
export class Auth {
  private current: string | undefined;
  /** When the current token expires (ms since the Unix epoch), if known. */
  private expiresAtMs: number | undefined;
  /** When the current token was obtained (ms). */
  private obtainedAtMs = 0;
  private stale = false;
  private inflight: Promise<string | undefined> | undefined;

  constructor(private readonly opts: AuthOptions) {
    if (opts.token) this.adopt(opts.token);
  }

  /** Whether a token can be renewed (an `authCallback` was given). */
  get canRenew(): boolean {
    return typeof this.opts.authCallback === 'function';
  }

  /** Whether tokens are in use (as opposed to a key or nothing). */
  get usesTokens(): boolean {
    return this.canRenew || this.opts.token !== undefined;
  }

  /** When the current token expires (ms), if known. */
  get expiresAt(): number | undefined {
    return this.expiresAtMs;
  }

  /**
   * The token to use now. Calls `authCallback` when there is none yet, when
   * the current one was refused ({@link invalidate}), or when it is about to
   * expire; otherwise returns the cached one.
   */
  async token(): Promise<string | undefined> {
    if (this.opts.key !== undefined && !this.usesTokens) return undefined;
    if (!this.canRenew) return this.current;
    if (this.current !== undefined && !this.stale && !this.dueForRenewal()) return this.current;
    return this.renew();
  }

  /** Calls `authCallback` now (coalesced with a call already running). */
  renew(): Promise<string | undefined> {
    const cb = this.opts.authCallback;
    if (!cb) return Promise.resolve(this.current);
    this.inflight ??= (async () => {
      try {
        const token = await cb();
        if (typeof token !== 'string' || token === '') {
          throw new TetherError(ErrorCodes.Unauthorized, 'authCallback returned no token');
        }
        this.adopt(token);
        return token;
      } finally {
        this.inflight = undefined;
      }
    })();
    return this.inflight;
  }

  /** The server refused or expired the current token: the next {@link token} renews it. */
  invalidate(): void {
    this.stale = true;
  }

  /** The server's `authorized.expires_at` (seconds) for the token in use. */
  noteExpiry(expiresAtSec: number | undefined): void {
    if (typeof expiresAtSec === 'number') this.expiresAtMs = expiresAtSec * 1000;
  }

  /**
   * Milliseconds from now until the current token should be renewed, or
   * undefined when it never needs to be (no expiry, or nothing to renew with).
   * Renewal happens a third of the lifetime before expiry, at least 1 s and
   * at most 60 s before it.
   */
  renewDelay(now = Date.now()): number | undefined {
    if (!this.canRenew || this.expiresAtMs === undefined) return undefined;
    return Math.max(0, this.expiresAtMs - this.margin() - now);
  }

  /** Query parameters carrying the credential (WebSocket upgrade, SSE). */
  query(token: string | undefined): Record<string, string> {
    if (token) return { token };
    if (this.opts.key !== undefined) {
      const q: Record<string, string> = { key: this.opts.key };
      if (this.opts.clientId !== undefined) q['client_id'] = this.opts.clientId;
      return q;
    }
    return {};
  }

  /** HTTP headers carrying the credential (REST). */
  headers(token: string | undefined): Record<string, string> {
    if (token) return { authorization: `Bearer ${token}` };
    if (this.opts.key !== undefined) {
      const h: Record<string, string> = { authorization: `Basic ${base64(this.opts.key)}` };
      if (this.opts.clientId !== undefined) h['x-tether-client-id'] = this.opts.clientId;
      return h;
    }
    return {};
  }

  private adopt(token: string): void {
    this.current = token;
    this.stale = false;
    this.obtainedAtMs = Date.now();
    const { exp } = decodeJwtTimes(token);
    this.expiresAtMs = exp !== undefined ? exp * 1000 : undefined;
  }

  private margin(): number {
    const lifetime = this.expiresAtMs === undefined ? Infinity : this.expiresAtMs - this.obtainedAtMs;
    return Math.min(60000, Math.max(1000, lifetime / 3));
  }

  private dueForRenewal(): boolean {
    if (this.expiresAtMs === undefined) return false;
    // A token obtained this very second is used even if short-lived, so a
    // callback that hands out short tokens cannot cause a renewal loop.
    if (Date.now() - this.obtainedAtMs < 1000) return Date.now() >= this.expiresAtMs;
    return Date.now() >= this.expiresAtMs - this.margin();
  }
}
