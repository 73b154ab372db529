/**
 * Connection resilience beyond plain drops: a long outage of a quiet
 * subscriber (resumes from the `synced` position, so nothing is missed even
 * past the rewind), and a silent server (heartbeat-silence detection).
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { controllable, history, makeClient, type Server, startServer, waitFor, WS } from './server.js';

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

test('a quiet subscriber that was away misses nothing, even past the rewind', async () => {
  const channel = 'chat:quiet';
  const ctl = controllable();
  const publisher = makeClient(server.url);
  const sub = makeClient(server.url, { WebSocket: ctl.WebSocket, rewind: 10 });
  try {
    const ch = sub.channel(channel);
    const synced: unknown[] = [];
    ch.on('synced', (s) => synced.push(s));
    await ch.attach();
    await waitFor(() => synced.length === 1, 5000, 'synced');
    assert.ok(ch.position, 'an empty channel still yields a resume position');

    ctl.refuse = true;
    for (const s of ctl.sockets) s.terminate();
    await waitFor(() => sub.state === 'disconnected', 5000, 'disconnected');
    const pub = publisher.channel(channel);
    for (let i = 0; i < 30; i++) await pub.publish({ data: `while away ${i}` });
    ctl.refuse = false;

    const expected = await history(publisher, channel);
    await waitFor(() => ch.messages().length === 30, 10000, 'all 30 messages, not just the rewind of 10');
    assert.deepEqual(ch.messages(), expected);
  } finally {
    publisher.close();
    sub.close();
  }
});

test('a silent server is detected and the client reconnects and resumes', async () => {
  const channel = 'chat:silent';
  const ctl = controllable();
  const publisher = makeClient(server.url);
  const sub = makeClient(server.url, { WebSocket: ctl.WebSocket, silenceTimeoutMs: 800 });
  try {
    const ch = sub.channel(channel);
    await ch.attach();
    const first = ctl.sockets[0] as WS;
    ctl.frozen.add(first); // the socket stays open but nothing arrives: a half-open connection
    const t0 = Date.now();
    const pub = publisher.channel(channel);
    await pub.publish({ data: 'sent while frozen' });
    await waitFor(() => sub.state === 'disconnected', 5000, 'silence detected');
    assert.ok(Date.now() - t0 >= 700, 'not before the silence timeout');
    await waitFor(() => ch.messages().length === 1, 10000, 'resumed after reconnect');
    assert.notEqual(first.readyState, WS.OPEN, 'the silent socket was abandoned');
    assert.deepEqual(ch.messages(), await history(publisher, channel));
  } finally {
    publisher.close();
    sub.close();
  }
});

test('detach then attach resumes from the position; a late joiner with rewind 0 fills a streaming message', async () => {
  const channel = 'chat:detach';
  const publisher = makeClient(server.url);
  const sub = makeClient(server.url);
  const late = makeClient(server.url);
  try {
    const ch = sub.channel(channel);
    await ch.attach();
    const pub = publisher.channel(channel);
    const { serial } = await pub.publish({ data: 'Hel' });
    await waitFor(() => ch.messages().length === 1, 5000, 'first message');
    await ch.detach();
    assert.equal(ch.state, 'detached');
    await pub.append(serial, 'lo');
    await pub.publish({ data: 'second' });
    const again = await ch.attach();
    assert.equal(again.continuity, 'resumed');
    const expected = await history(publisher, channel);
    await waitFor(() => ch.messages().length === 2 && ch.messages()[0]?.data === 'Hello', 5000, 'resumed after detach');
    assert.deepEqual(ch.messages(), expected);

    // Joins with no rewind while the first message keeps streaming: the
    // fragments are orphans, so the SDK fetches the message once.
    const lch = late.channel(channel, { rewind: 0 });
    const events: unknown[] = [];
    lch.subscribe((e) => events.push(e));
    await lch.attach();
    assert.equal(lch.messages().length, 0);
    await pub.append(serial, ', wor');
    await pub.append(serial, 'ld');
    await waitFor(() => events.length === 2, 5000, 'two fragments');
    await waitFor(() => lch.messages()[0]?.data === 'Hello, world', 5000, 'the streaming message filled in');
    const now = await history(publisher, channel);
    assert.deepEqual(lch.messages(), now.filter((m) => m.serial === serial));
  } finally {
    publisher.close();
    sub.close();
    late.close();
  }
});

test('mutations made while disconnected are queued, sent in order, and channels re-attach', async () => {
  const channel = 'chat:queued';
  const ctl = controllable();
  const client = makeClient(server.url, { WebSocket: ctl.WebSocket });
  const observer = makeClient(server.url);
  try {
    const ch = client.channel(channel);
    await ch.attach();
    const { serial } = await ch.publish({ data: '' });
    ctl.refuse = true;
    for (const s of ctl.sockets) s.terminate();
    await waitFor(() => client.state === 'disconnected', 5000, 'disconnected');
    const queued = [ch.append(serial, 'a'), ch.append(serial, 'b'), ch.publish({ data: 'next' }), ch.append(serial, 'c')];
    await new Promise((r) => setTimeout(r, 100));
    ctl.refuse = false;
    await Promise.all(queued);
    const expected = await history(observer, channel);
    assert.equal(expected[0]?.data, 'abc', 'queued appends applied once, in order');
    assert.equal(expected.length, 2);
    await waitFor(() => ch.state === 'attached' && ch.messages().length === 2 && ch.messages()[0]?.data === 'abc', 5000, 're-attached view');
    assert.deepEqual(ch.messages(), expected);
  } finally {
    client.close();
    observer.close();
  }
});
