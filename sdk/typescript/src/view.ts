/**
 * The conversation view: folds events into the ordered list of current
 * messages, with exactly the rules of tether-core's `View` (fold.rs), so the
 * server, the Rust SDK and this SDK can never disagree about what a channel
 * shows.
 */

import type { Message, Serial } from './types.js';

/**
 * What folding one event did:
 * - `applied`: the view changed;
 * - `duplicate`: the view already held this version or a newer one (a
 *   repeat after a resume, or a fragment a snapshot already contains);
 * - `orphan`: an append to a message the view never saw (it attached after
 *   the message started); new, but it cannot be folded without the start.
 */
export type FoldResult = 'applied' | 'duplicate' | 'orphan';

/**
 * Current messages of one channel, ordered by serial.
 *
 * Folding is idempotent: an event whose `version.serial` is not greater than
 * the version held for its message is ignored. That is what lets a snapshot
 * (the whole message so far) be followed by fragments that overlap it, and
 * what makes redelivery after a reconnect harmless.
 */
export class View {
  private readonly bySerial = new Map<Serial, Message>();
  /** Serials in ascending order (new messages almost always go last). */
  private order: Serial[] = [];
  /** Highest version delivered for messages the view cannot hold (orphan fragments). */
  private readonly orphanVersions = new Map<Serial, Serial>();
  private cached: readonly Message[] | null = null;

  /** The version held for `serial` (a folded message's, or the last orphan fragment's). */
  heldVersion(serial: Serial): Serial | undefined {
    return this.bySerial.get(serial)?.version.serial ?? this.orphanVersions.get(serial);
  }

  /** Folds one event in (tether-core `View::apply`). */
  apply(event: Message): FoldResult {
    const held = this.heldVersion(event.serial);
    if (held !== undefined && held >= event.version.serial) return 'duplicate';
    if (event.action === 'append') {
      const existing = this.bySerial.get(event.serial);
      if (!existing) {
        this.orphanVersions.set(event.serial, event.version.serial);
        return 'orphan';
      }
      const fragment = typeof event.data === 'string' ? event.data : '';
      const folded: Message = {
        ...existing,
        data: typeof existing.data === 'string' ? existing.data + fragment : fragment,
        action: 'update',
        version: event.version,
      };
      if (event.name !== undefined) folded.name = event.name;
      if (event.extras !== undefined) folded.extras = event.extras;
      this.put(folded);
      return 'applied';
    }
    this.put(event);
    return 'applied';
  }

  /**
   * Inserts a whole message fetched out of band (REST) for a message the
   * view only saw fragments of. Refused (returns false) when the view already
   * holds it, or when fragments newer than the fetched version were
   * delivered meanwhile (the fetched copy would miss them).
   */
  fill(message: Message): boolean {
    if (this.bySerial.has(message.serial)) return false;
    const orphan = this.orphanVersions.get(message.serial);
    if (orphan !== undefined && orphan > message.version.serial) return false;
    this.put(message);
    return true;
  }

  /** Whether the view holds the message with `serial`. */
  has(serial: Serial): boolean {
    return this.bySerial.has(serial);
  }

  /** The message with `serial`, if held. */
  get(serial: Serial): Message | undefined {
    return this.bySerial.get(serial);
  }

  /** Current messages in channel order. The array is immutable and replaced on every change, so UIs can compare by reference. */
  messages(): readonly Message[] {
    if (!this.cached) {
      const list: Message[] = [];
      for (const serial of this.order) list.push(this.bySerial.get(serial) as Message);
      this.cached = Object.freeze(list);
    }
    return this.cached;
  }

  /** How many messages the view holds. */
  get size(): number {
    return this.bySerial.size;
  }

  /** Drops everything (continuity lost: the local view is stale). */
  clear(): void {
    this.bySerial.clear();
    this.orphanVersions.clear();
    this.order = [];
    this.cached = null;
  }

  /** Replaces the contents with saved messages (page-refresh restore). */
  load(messages: readonly Message[]): void {
    this.clear();
    for (const m of messages) this.put(m);
  }

  private put(message: Message): void {
    const serial = message.serial;
    if (!this.bySerial.has(serial)) {
      this.orphanVersions.delete(serial);
      const order = this.order;
      if (order.length === 0 || (order[order.length - 1] as Serial) < serial) {
        order.push(serial);
      } else {
        let lo = 0;
        let hi = order.length;
        while (lo < hi) {
          const mid = (lo + hi) >>> 1;
          if ((order[mid] as Serial) < serial) lo = mid + 1;
          else hi = mid;
        }
        order.splice(lo, 0, serial);
      }
    }
    this.bySerial.set(serial, message);
    this.cached = null;
  }
}
