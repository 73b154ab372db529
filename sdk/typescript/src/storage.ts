/**
 * Page-refresh survival: each channel's last position and its folded view
 * are saved to `sessionStorage` (per tab, cleared when the tab closes), so a
 * reloaded page shows the conversation at once and resumes from where it
 * was instead of replaying it.
 *
 * Position and view are written together in one record: a saved position is
 * never ahead of the saved view, so resuming from it can never skip events.
 */

import type { SessionRecord } from './connection.js';
import type { Message, Serial, StorageLike } from './types.js';

/** What is saved for one channel. */
export interface SavedChannel {
  position: Serial;
  messages: Message[];
}

/** Supplies the state to write when a debounced save fires. */
export type StateSource = () => SavedChannel | undefined;

const VERSION = 1;

/**
 * Debounced writer. Writing the whole view on every token of a stream would
 * cost a synchronous storage write per frame; a short delay batches them.
 * Losing the last few hundred milliseconds on a crash is safe: the saved
 * position matches the saved view, and the rest is replayed on resume.
 */
export class Persistence {
  private readonly dirty = new Map<string, StateSource>();
  private timer: ReturnType<typeof setTimeout> | undefined;
  private sessionSource: (() => SessionRecord | undefined) | undefined;
  private readonly onHide = (): void => this.flush();

  constructor(
    private readonly storage: StorageLike,
    private readonly prefix: string,
    private readonly delayMs = 200,
  ) {
    const g = globalThis as { addEventListener?: (t: string, l: () => void) => void };
    g.addEventListener?.('pagehide', this.onHide);
  }

  /** The saved state of `channel`, if any and readable. */
  load(channel: string): SavedChannel | undefined {
    try {
      const raw = this.storage.getItem(this.key(channel));
      if (!raw) return undefined;
      const rec = JSON.parse(raw) as { v?: number; position?: unknown; messages?: unknown };
      if (rec.v !== VERSION || typeof rec.position !== 'string' || !Array.isArray(rec.messages)) return undefined;
      return { position: rec.position, messages: rec.messages as Message[] };
    } catch {
      return undefined;
    }
  }

  /** Marks `channel` for saving soon; `source` is read when the save happens. */
  schedule(channel: string, source: StateSource): void {
    this.dirty.set(channel, source);
    this.timer ??= setTimeout(() => this.flush(), this.delayMs);
  }

  /** Forgets `channel` (continuity lost, or the app cleared it). */
  remove(channel: string): void {
    this.dirty.delete(channel);
    try {
      this.storage.removeItem(this.key(channel));
    } catch {
      /* storage unavailable */
    }
  }

  /** Writes everything pending now. */
  flush(): void {
    clearTimeout(this.timer);
    this.timer = undefined;
    const pending = [...this.dirty];
    this.dirty.clear();
    const session = this.sessionSource?.();
    if (session) this.saveSession(session);
    for (const [channel, source] of pending) {
      const state = source();
      if (!state) {
        this.remove(channel);
        continue;
      }
      try {
        this.storage.setItem(this.key(channel), JSON.stringify({ v: VERSION, ...state }));
      } catch {
        // Over quota: a position without its view would resume into a
        // partial view, so save nothing and let the next load start fresh.
        this.remove(channel);
      }
    }
  }

  /**
   * The connection's resume state, saved so that a reloaded page can resume
   * the connection (and keep its presence) rather than start a new one.
   */
  loadSession(): SessionRecord | undefined {
    try {
      const raw = this.storage.getItem(this.sessionKey());
      if (!raw) return undefined;
      const rec = JSON.parse(raw) as Partial<SessionRecord> & { v?: number };
      if (
        rec.v !== VERSION ||
        typeof rec.connectionId !== 'string' ||
        typeof rec.resumeKey !== 'string' ||
        typeof rec.ttlMs !== 'number' ||
        typeof rec.seq !== 'number' ||
        typeof rec.aliveAt !== 'number'
      ) {
        return undefined;
      }
      return { connectionId: rec.connectionId, resumeKey: rec.resumeKey, ttlMs: rec.ttlMs, seq: rec.seq, aliveAt: rec.aliveAt };
    } catch {
      return undefined;
    }
  }

  /** Writes (or, with undefined, removes) the resume state now. */
  saveSession(record: SessionRecord | undefined): void {
    try {
      if (record) this.storage.setItem(this.sessionKey(), JSON.stringify({ v: VERSION, ...record }));
      else this.storage.removeItem(this.sessionKey());
    } catch {
      /* storage unavailable: a reload simply starts a new connection */
    }
  }

  /** Where every flush (and page hide) reads the current resume state from, to keep its `aliveAt` fresh. */
  setSessionSource(source: () => SessionRecord | undefined): void {
    this.sessionSource = source;
  }

  /** Flushes and stops listening for page hide. */
  close(): void {
    this.flush();
    const g = globalThis as { removeEventListener?: (t: string, l: () => void) => void };
    g.removeEventListener?.('pagehide', this.onHide);
  }

  private key(channel: string): string {
    return `${this.prefix}${channel}`;
  }

  /** `#` cannot occur in a channel name, so this never collides with a channel's key. */
  private sessionKey(): string {
    return `${this.prefix}#connection`;
  }
}

/** A `Storage` kept in memory, for tests and for sharing state between client instances in one process. */
export class MemoryStorage implements StorageLike {
  private readonly items = new Map<string, string>();

  getItem(key: string): string | null {
    return this.items.get(key) ?? null;
  }

  setItem(key: string, value: string): void {
    this.items.set(key, String(value));
  }

  removeItem(key: string): void {
    this.items.delete(key);
  }

  /** Number of stored items. */
  get length(): number {
    return this.items.size;
  }
}
