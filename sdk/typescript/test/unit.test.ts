/** Unit tests that need no server: folding, SSE parsing, backoff, persistence. */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { Auth } from '../src/auth.js';
import { ChannelPresence } from '../src/presence.js';
import { decodeJwtTimes, MemoryStorage, type Message, type PresenceEvent, type PresenceMember, streamStatus, View } from '../src/index.js';
import { SseParser, type SseEvent } from '../src/sse.js';
import { Persistence } from '../src/storage.js';
import { backoffDelay, httpBase, wsUrl } from '../src/util.js';

const S = (n: number) => `1764151200000-${String(n).padStart(16, '0')}`;
const msg = (serial: number, version: number, action: Message['action'], data: unknown, extra: Partial<Message> = {}): Message => ({
  serial: S(serial),
  id: `id-${serial}`,
  data,
  timestamp: 1,
  action,
  version: { serial: S(version), timestamp: 1 },
  ...extra,
});

test('view folds like tether-core View', () => {
  const v = new View();
  assert.equal(v.apply(msg(1, 1, 'create', 'Hel')), 'applied');
  assert.equal(v.apply(msg(1, 2, 'append', 'lo')), 'applied');
  assert.equal(v.apply(msg(1, 2, 'append', 'lo')), 'duplicate');
  assert.equal(v.apply(msg(1, 1, 'create', 'Hel')), 'duplicate');
  assert.equal(v.messages()[0]?.data, 'Hello');
  assert.equal(v.messages()[0]?.action, 'update');
  assert.equal(v.messages()[0]?.version.serial, S(2));
  // A snapshot ahead of fragments absorbs them.
  assert.equal(v.apply(msg(3, 5, 'update', 'abc')), 'applied');
  assert.equal(v.apply(msg(3, 4, 'append', 'c')), 'duplicate');
  assert.equal(v.apply(msg(3, 6, 'append', 'd', { extras: { stream: 'done' }, name: 'n' })), 'applied');
  assert.deepEqual(v.get(S(3))?.extras, { stream: 'done' });
  assert.equal(v.get(S(3))?.name, 'n');
  // Orphan fragments, then a fill.
  assert.equal(v.apply(msg(7, 8, 'append', 'x')), 'orphan');
  assert.equal(v.fill(msg(7, 7, 'update', 'old')), false, 'fill older than a delivered fragment is refused');
  assert.equal(v.fill(msg(7, 8, 'update', 'wx')), true);
  assert.equal(v.apply(msg(7, 8, 'append', 'x')), 'duplicate');
  // Ordered by serial whatever the arrival order.
  v.apply(msg(2, 9, 'create', 'two'));
  assert.deepEqual(v.messages().map((m) => m.serial), [S(1), S(2), S(3), S(7)]);
  // Delete replaces; appending onto null data starts a string.
  v.apply(msg(2, 10, 'delete', null));
  assert.equal(v.get(S(2))?.data, null);
  v.apply(msg(4, 11, 'create', null));
  v.apply(msg(4, 12, 'append', 'z'));
  assert.equal(v.get(S(4))?.data, 'z');
  const before = v.messages();
  assert.equal(v.messages(), before, 'unchanged view keeps its array');
  v.apply(msg(4, 13, 'append', 'z'));
  assert.notEqual(v.messages(), before, 'a change makes a new array');
});

test('SSE parser: fields, ids only when present, CRLF split across chunks, comments', () => {
  const out: SseEvent[] = [];
  const p = new SseParser((e) => out.push(e));
  p.push('event: attached\ndata: {"a":1}\n\n: keep-alive\n\n');
  p.push('id: 5\r');
  p.push('\nevent: message\r\ndata: x\r\ndata: y\r\n\r\n');
  p.push('event: message\ndata:z\n');
  p.push('\n');
  assert.deepEqual(out, [
    { event: 'attached', data: '{"a":1}' },
    { event: 'message', data: 'x\ny', id: '5' },
    { event: 'message', data: 'z' },
  ]);
});

test('backoff grows, is capped, and is jittered', () => {
  for (let i = 0; i < 50; i++) {
    const d0 = backoffDelay(0, { initialDelayMs: 100, maxDelayMs: 1000 });
    assert.ok(d0 >= 50 && d0 <= 100);
    const d10 = backoffDelay(10, { initialDelayMs: 100, maxDelayMs: 1000 });
    assert.ok(d10 >= 500 && d10 <= 1000);
  }
});

test('URLs', () => {
  assert.equal(httpBase('ws://h:1/ws'), 'http://h:1');
  assert.equal(httpBase('https://h/prefix/'), 'https://h/prefix');
  assert.equal(wsUrl('https://h/prefix', 't k'), 'wss://h/prefix/ws?token=t+k');
  assert.equal(wsUrl('http://h', { key: 'app:s', client_id: 'a' }, 0), 'ws://h/ws?key=app%3As&client_id=a&rollup_ms=0');
});

test('persistence saves position and view together, debounced', async () => {
  const storage = new MemoryStorage();
  const p = new Persistence(storage, 'x:', 5);
  p.schedule('c', () => ({ position: S(2), messages: [msg(1, 2, 'update', 'a')] }));
  assert.equal(storage.length, 0);
  await new Promise((r) => setTimeout(r, 30));
  assert.equal(p.load('c')?.position, S(2));
  p.schedule('c', () => undefined);
  p.flush();
  assert.equal(p.load('c'), undefined);
  p.close();
});

const jwt = (claims: object) => `x.${Buffer.from(JSON.stringify(claims)).toString('base64url')}.sig`;

test('JWT times are read without verifying; renewal is due a third of the lifetime early (1-60 s)', async () => {
  assert.deepEqual(decodeJwtTimes(jwt({ exp: 100, iat: 40, sub: 'x' })), { exp: 100, iat: 40 });
  assert.deepEqual(decodeJwtTimes('not a jwt'), {});
  const now = Math.floor(Date.now() / 1000);
  let calls = 0;
  const auth = new Auth({ authCallback: () => (calls++, jwt({ exp: now + 3600 })) });
  assert.equal(await auth.token(), jwt({ exp: now + 3600 }));
  assert.equal(calls, 1);
  await auth.token();
  assert.equal(calls, 1, 'cached while fresh');
  const delay = auth.renewDelay() as number;
  assert.ok(delay > 3600_000 - 62_000 && delay <= 3600_000 - 59_000, `renew about 60 s early, got ${delay}`);
  auth.invalidate();
  await auth.token();
  assert.equal(calls, 2, 'renewed after invalidate');
  const [a, b] = await Promise.all([auth.renew(), auth.renew()]);
  assert.equal(a, b);
  assert.equal(calls, 3, 'concurrent renewals coalesce');
  auth.noteExpiry(now + 3);
  assert.ok((auth.renewDelay() as number) < 3000);
  assert.equal(new Auth({ token: jwt({ exp: now + 3 }) }).renewDelay(), undefined, 'a fixed token cannot be renewed');
  const key = new Auth({ key: 'app:secret', clientId: 'agent' });
  assert.deepEqual(key.query(await key.token()), { key: 'app:secret', client_id: 'agent' });
  assert.deepEqual(key.headers(undefined), { authorization: `Basic ${Buffer.from('app:secret').toString('base64')}`, 'x-tether-client-id': 'agent' });
});

test('presence: sync pages replace the set, diffs are reported, live changes apply', () => {
  const sent: string[] = [];
  let enabled = 0;
  const p = new ChannelPresence({
    send: async (action) => void sent.push(action),
    enable: () => void enabled++,
    fetch: async () => [],
    report: () => {},
  });
  const m = (id: string, data: unknown, timestamp = 1): PresenceMember => ({ connection_id: id, client_id: `u-${id}`, data, timestamp });
  const events: PresenceEvent[] = [];
  p.subscribe((e) => events.push(e));
  assert.equal(enabled, 1);
  p._onSync([m('b', 1)], false);
  assert.equal(p.members().length, 0, 'not applied before complete');
  p._onSync([m('a', 1)], true);
  assert.deepEqual(p.members().map((x) => x.connection_id), ['a', 'b']);
  assert.ok(p.synced);
  assert.deepEqual(events.map((e) => `${e.action}:${e.member.connection_id}:${e.fromSync}`), ['enter:b:true', 'enter:a:true']);
  events.length = 0;
  p._onEvent('enter', m('c', 1));
  p._onEvent('update', m('a', 2, 2));
  p._onEvent('leave', m('b', 1));
  assert.deepEqual(p.members().map((x) => `${x.connection_id}=${String(x.data)}`), ['a=2', 'c=1']);
  assert.deepEqual(events.map((e) => `${e.action}:${e.member.connection_id}:${e.fromSync ?? false}`), ['enter:c:false', 'update:a:false', 'leave:b:false']);
  events.length = 0;
  // A fresh sync after a reconnect: only the differences are reported.
  p._suspend();
  assert.equal(p.synced, false);
  p._onSync([m('a', 2, 2), m('d', 1)], true);
  assert.deepEqual(events.map((e) => `${e.action}:${e.member.connection_id}`), ['leave:c', 'enter:d']);
  // Re-enter only when entered and nothing is pending.
  p._reenter();
  assert.deepEqual(sent, []);
  void p.enter({ role: 'user' });
  p._reenter();
  assert.deepEqual(sent, ['enter'], 'no re-enter while the enter is pending');
});

test('streamStatus reads extras.stream', () => {
  assert.equal(streamStatus({ extras: { stream: 'streaming' } }), 'streaming');
  assert.equal(streamStatus({ extras: { stream: 'complete' } }), 'complete');
  assert.equal(streamStatus({ extras: {} }), undefined);
  assert.equal(streamStatus({}), undefined);
});
