/** Unit tests that need no server: folding, SSE parsing, backoff, persistence. */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MemoryStorage, type Message, View } from '../src/index.js';
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
