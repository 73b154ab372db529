/**
 * Test 1: 500 appends streamed by one client while a subscriber's socket is
 * cut every ~50 appends. The subscriber's folded view must equal REST
 * history, and its listener must never see an event twice nor miss one.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import type { Message } from '../src/index.js';
import {
  assertNoDuplicates,
  dropSockets,
  fold,
  history,
  makeClient,
  type Server,
  startServer,
  trackingWebSocket,
  waitFor,
  type WS,
} from './server.js';

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

test('500 appends with the subscriber dropped every 50: view equals history, no duplicates', async () => {
  const channel = 'chat:stream-500';
  const publisher = makeClient(server.url);
  const sockets: WS[] = [];
  const subscriber = makeClient(server.url, { WebSocket: trackingWebSocket(sockets) });
  try {
    const sub = subscriber.channel(channel);
    const events: Message[] = [];
    const continuities: string[] = [];
    sub.on('attached', (a) => continuities.push(a.continuity));
    sub.subscribe((e) => events.push(e));
    await sub.attach();

    const pub = publisher.channel(channel);
    let drops = 0;
    let appends = 0;
    // Five responses of 100 fragments each; drops land both mid-response and
    // right after a create, so resumes see plain fragments and snapshots.
    for (let m = 0; m < 5; m++) {
      const { serial } = await pub.publish({ name: 'response', data: '', extras: { role: 'assistant' } });
      const acks: Promise<unknown>[] = [];
      for (let i = 0; i < 100; i++) {
        acks.push(pub.append(serial, `m${m}t${i} `));
        appends++;
        if (appends % 50 === 0) {
          await Promise.all(acks);
          drops += dropSockets(sockets);
          // Wait for the reconnect, so every cut hits a live socket
          // however fast the server acknowledges.
          await waitFor(() => sockets.some((s) => s.readyState === 1 /* OPEN */), 5000, 'subscriber to reconnect');
        }
      }
      await Promise.all(acks);
      await pub.update(serial, { extras: { stream: 'done' } });
    }

    const expected = await history(publisher, channel);
    assert.equal(expected.length, 5);
    await waitFor(() => {
      try {
        assert.deepEqual(sub.messages(), expected);
        return true;
      } catch {
        return false;
      }
    }, 20000, 'subscriber view to equal history');

    assert.ok(drops >= 8, `expected about 10 drops, got ${drops}`);
    assert.ok(sockets.length >= drops, 'the subscriber reconnected after each drop');
    assert.equal(continuities[0], 'new');
    assert.ok(continuities.slice(1).every((c) => c === 'resumed'), `continuities: ${continuities.join(',')}`);
    assertNoDuplicates(events);
    // What the listener saw, folded from scratch, is the whole conversation: no gap.
    assert.deepEqual(fold(events), expected);
    for (const m of expected) assert.equal((m.data as string).split(' ').length - 1, 100);
  } finally {
    publisher.close();
    subscriber.close();
  }
});

test('a publisher whose socket drops mid-stream: publishes and appends exactly once (connection resume)', async () => {
  const channel = 'chat:publisher-drop';
  const sockets: WS[] = [];
  const publisher = makeClient(server.url, { WebSocket: trackingWebSocket(sockets) });
  try {
    const pub = publisher.channel(channel);
    await waitFor(() => publisher.state === 'connected', 10000, 'publisher connected');
    const ids = Array.from({ length: 40 }, (_, i) => `p-${i}`);
    const publishes = ids.map((id, i) => {
      if (i === 20) dropSockets(sockets);
      return pub.publish({ id, data: `message ${i}` });
    });
    // Drop again while some of them are surely in flight.
    setTimeout(() => dropSockets(sockets), 1);
    const acks = await Promise.all(publishes);
    const serials = new Set(acks.map((a) => a.serial));
    assert.equal(serials.size, 40, 'every publish got its own serial');

    const { serial } = await pub.publish({ data: '' });
    const outcomes: { fragment: string; ok: boolean; code?: number }[] = [];
    const pending: Promise<void>[] = [];
    for (let i = 0; i < 200; i++) {
      const fragment = `f${i};`;
      pending.push(
        pub.append(serial, fragment).then(
          () => void outcomes.push({ fragment, ok: true }),
          (err: { code?: number }) => void outcomes.push({ fragment, ok: false, code: err.code }),
        ),
      );
      if (i === 100) dropSockets(sockets);
    }
    await Promise.all(pending);
    assert.deepEqual(outcomes.filter((o) => !o.ok), [], 'the connection resumed: no append failed');

    const all = await history(publisher, channel);
    assert.equal(all.filter((m) => m.id.startsWith('p-')).length, 40, 'no publish stored twice');
    const data = all.find((m) => m.serial === serial)?.data as string;
    // Every fragment is there exactly once, in order.
    assert.equal(data, Array.from({ length: 200 }, (_, i) => `f${i};`).join(''));
  } finally {
    publisher.close();
  }
});
