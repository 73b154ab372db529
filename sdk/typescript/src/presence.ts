/**
 * Presence (docs/presence.md): who is on a channel right now. The member
 * set is kept from the server's `presence-sync` pages (which replace it)
 * and `presence` events (which change it), so {@link ChannelPresence.members}
 * is always the current set while the channel is attached with presence.
 */

import { Emitter } from './emitter.js';
import type { TetherError } from './errors.js';
import type { PresenceAction, PresenceEvent, PresenceMember } from './types.js';

/** Events of a {@link ChannelPresence}. */
export interface PresenceEvents extends Record<string, unknown> {
  /** One change: live, or derived from a fresh sync (`fromSync: true`). */
  presence: PresenceEvent;
  /** The member set changed; the payload is the new immutable list. */
  members: readonly PresenceMember[];
  /** A complete sync arrived: the set is current. */
  synced: readonly PresenceMember[];
}

/** What a {@link ChannelPresence} needs from its channel. @internal */
export interface PresenceHost {
  /** Sends enter/update/leave as this connection. */
  send(action: PresenceAction, data: unknown): Promise<void>;
  /** Attach (or re-attach) the channel with presence delivery. */
  enable(): void;
  /** `GET /channels/{channel}/presence`. */
  fetch(): Promise<PresenceMember[]>;
  /** Reports an error that has no caller to reject (a failed automatic re-enter). */
  report(err: TetherError): void;
}

/** A presence subscriber. */
export type PresenceListener = (event: PresenceEvent) => void;

function sameMember(a: PresenceMember, b: PresenceMember): boolean {
  return a.timestamp === b.timestamp && a.client_id === b.client_id && JSON.stringify(a.data) === JSON.stringify(b.data);
}

/**
 * The presence of one channel: `channel.presence`. Entering needs the
 * `presence` capability; watching (members, subscribe) needs
 * `presence-subscribe` and attaches the channel with presence.
 */
export class ChannelPresence extends Emitter<PresenceEvents> {
  private readonly set = new Map<string, PresenceMember>();
  private cached: readonly PresenceMember[] | null = null;
  /** Pages of a sync in progress. */
  private syncing: Map<string, PresenceMember> | undefined;
  private _synced = false;
  private _entered = false;
  private _data: unknown;
  /** Presence requests not yet answered; while any, a re-enter is not needed (they are re-sent). */
  private pending = 0;

  /** @internal Created by the channel. */
  constructor(private readonly host: PresenceHost) {
    super();
  }

  /**
   * Enters the channel's member set as this connection with `data` (by
   * convention `{role, status}`); entering again updates. Resolves on the
   * server's `ok`. The SDK remembers the data: if the connection is lost
   * and cannot be resumed, it enters again with it by itself (a resumed
   * connection keeps its presence on the server, so nobody sees a flicker).
   */
  enter(data?: unknown): Promise<void> {
    this._entered = true;
    this._data = data ?? null;
    return this.send('enter', this._data);
  }

  /** Changes this connection's member data (enters if not present). */
  update(data: unknown): Promise<void> {
    this._entered = true;
    this._data = data ?? null;
    return this.send('update', this._data);
  }

  /** Leaves the member set. Closing the client leaves every channel too. */
  leave(): Promise<void> {
    this._entered = false;
    return this.send('leave', undefined);
  }

  /** Whether this connection has entered (as far as the app asked). */
  get entered(): boolean {
    return this._entered;
  }

  /** The data last entered with. */
  get data(): unknown {
    return this._data;
  }

  /**
   * The current members (one per connection), ordered by connection id.
   * Kept up to date while the channel is attached with presence (see
   * {@link subscribe}, {@link onMembers}, or `client.channel(name, {presence: true})`);
   * check {@link synced} to know whether the first sync has arrived.
   * Immutable; replaced on every change.
   */
  members(): readonly PresenceMember[] {
    if (!this.cached) {
      this.cached = Object.freeze([...this.set.values()].sort((a, b) => (a.connection_id < b.connection_id ? -1 : 1)));
    }
    return this.cached;
  }

  /** Whether the member set is current (a complete sync arrived on the current attachment). */
  get synced(): boolean {
    return this._synced;
  }

  /**
   * Listens to member changes (`enter`, `update`, `leave`). Attaches the
   * channel with presence if needed. After an attach or reconnect the SDK
   * compares the fresh sync with the set it held and reports the
   * differences as events with `fromSync: true`, so a listener that
   * maintains its own state never drifts. Returns an unsubscribe.
   */
  subscribe(listener: PresenceListener): () => void {
    const off = this.on('presence', listener);
    this.host.enable();
    return off;
  }

  /**
   * Observes the member set: `cb` is called now and on every change. This
   * is what a "who's here" UI binds to. Attaches with presence if needed.
   */
  onMembers(cb: (members: readonly PresenceMember[]) => void): () => void {
    const off = this.on('members', cb);
    cb(this.members());
    this.host.enable();
    return off;
  }

  /** The members right now, from the server over REST (`GET /channels/{channel}/presence`). */
  fetch(): Promise<PresenceMember[]> {
    return this.host.fetch();
  }

  // ---- called by the channel ---------------------------------------------

  /** @internal One `presence-sync` page. */
  _onSync(members: PresenceMember[], complete: boolean): void {
    this.syncing ??= new Map();
    for (const m of members) this.syncing.set(m.connection_id, m);
    if (!complete) return;
    const next = this.syncing;
    this.syncing = undefined;
    const events: PresenceEvent[] = [];
    for (const [id, old] of this.set) {
      if (!next.has(id)) events.push({ action: 'leave', member: old, fromSync: true });
    }
    for (const [id, m] of next) {
      const old = this.set.get(id);
      if (!old) events.push({ action: 'enter', member: m, fromSync: true });
      else if (!sameMember(old, m)) events.push({ action: 'update', member: m, fromSync: true });
    }
    this.set.clear();
    for (const [id, m] of next) this.set.set(id, m);
    this.cached = null;
    this._synced = true;
    for (const e of events) this.emit('presence', e);
    if (events.length > 0) this.emit('members', this.members());
    this.emit('synced', this.members());
  }

  /** @internal One live change. */
  _onEvent(action: PresenceAction, member: PresenceMember): void {
    // Changes arrive after the sync's last page; should one come while a
    // sync is being paged, it applies to the set being built.
    const target = this.syncing ?? this.set;
    if (action === 'leave') target.delete(member.connection_id);
    else target.set(member.connection_id, member);
    if (target !== this.set) return;
    this.cached = null;
    this.emit('presence', { action, member });
    this.emit('members', this.members());
  }

  /** @internal The channel stopped receiving presence (detached): the set is no longer known. */
  _reset(): void {
    this.syncing = undefined;
    this._synced = false;
    if (this.set.size === 0) return;
    this.set.clear();
    this.cached = null;
    this.emit('members', this.members());
  }

  /** @internal The connection was lost: the set is stale until the next sync. */
  _suspend(): void {
    this.syncing = undefined;
    this._synced = false;
  }

  /**
   * @internal A new connection (not a resumed one): the server forgot this
   * connection's presence, so enter again with the last data, unless a
   * presence request is still queued (it will be sent and set the state).
   */
  _reenter(): void {
    if (!this._entered || this.pending > 0) return;
    this.send('enter', this._data).catch((err: TetherError) => this.host.report(err));
  }

  private send(action: PresenceAction, data: unknown): Promise<void> {
    this.pending++;
    const done = () => {
      this.pending--;
    };
    const p = this.host.send(action, data);
    p.then(done, done);
    return p;
  }
}
