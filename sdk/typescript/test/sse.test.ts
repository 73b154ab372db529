/**
 * Test 4: the SSE + REST fallback gives the same view as WebSocket, through
 * stream drops (resumed from the SSE `id:` position), and publishes and
 * mutates over REST.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import type { Message } from '../src/index.js';
import { assertNoDuplicates, history, makeClient, type Server, startServer, waitFor } from './server.js';

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

/** A fetch whose event-stream requests can be cut from the test. */
function cuttableFetch(): { fetch: typeof fetch; cut: () => number; streams: number } {
  const live = new Set<AbortController>();
  const state = {
    streams: 0,
    fetch: (async (input: string | URL | Request, init?: RequestInit) => {
      const url = String(input);
      if (!url.includes('/stream')) return fetch(input, init);
      state.streams++;
      const ctrl = new AbortController();
      init?.signal?.addEventListener('abort', () => ctrl.abort());
      live.add(ctrl);
      return fetch(input, { ...init, signal: ctrl.signal });
    }) as typeof fetch,
    cut: () => {
      const n = live.size;
      for (const c of live) c.abort();
      live.clear();
      return n;
    },
  };
  return state;
}

test('SSE fallback receives the same view, across stream drops', async () => {
  const channel = 'chat:sse';
  const publisher = makeClient(server.url);
  const cf = cuttableFetch();
  const sse = makeClient(server.url, { transport: 'sse', fetch: cf.fetch });
  try {
    assert.equal(sse.transport, 'sse');
    const ch = sse.channel(channel);
    const events: Message[] = [];
    const continuities: string[] = [];
    ch.on('attached', (a) => continuities.push(a.continuity));
    ch.subscribe((e) => events.push(e));
    await ch.attach();

    const pub = publisher.channel(channel);
    for (let m = 0; m < 3; m++) {
      const { serial } = await pub.publish({ name: 'response', data: '' });
      const acks: Promise<unknown>[] = [];
      for (let i = 0; i < 60; i++) {
        acks.push(pub.append(serial, `m${m}t${i} `));
        if (i % 25 === 24) {
          await Promise.all(acks);
          const opened = cf.streams;
          cf.cut();
          // Wait for the stream to reopen, so every cut hits a live stream.
          await waitFor(() => cf.streams > opened, 5000, 'SSE stream to reopen');
        }
      }
      await Promise.all(acks);
    }
    const expected = await history(publisher, channel);
    await waitFor(() => {
      try {
        assert.deepEqual(ch.messages(), expected);
        return true;
      } catch {
        return false;
      }
    }, 20000, 'SSE view to equal history');
    assert.ok(cf.streams >= 6, `streams reopened after cuts (${cf.streams})`);
    assert.equal(continuities[0], 'new');
    assert.ok(continuities.slice(1).every((c) => c === 'resumed'), continuities.join(','));
    assertNoDuplicates(events);

    // Publish and mutate through REST from the SSE client; in-order appends.
    const { serial } = await ch.publish({ name: 'prompt', data: '' });
    const parts = Array.from({ length: 20 }, (_, i) => `p${i}`);
    await Promise.all(parts.map((p) => ch.append(serial, p)));
    await ch.update(serial, { extras: { stream: 'done' } });
    const after = await history(publisher, channel);
    assert.equal(after.at(-1)?.data, parts.join(''));
    await waitFor(() => {
      try {
        assert.deepEqual(ch.messages(), after);
        return true;
      } catch {
        return false;
      }
    }, 10000, 'SSE view after REST mutations');
  } finally {
    publisher.close();
    sse.close();
  }
});

test('SSE attach to a late conversation rewinds', async () => {
  const channel = 'chat:sse-late';
  const publisher = makeClient(server.url);
  const pub = publisher.channel(channel);
  const { serial } = await pub.publish({ data: 'hi' });
  await pub.append(serial, ' there');
  const sse = makeClient(server.url, { transport: 'sse' });
  try {
    const ch = sse.channel(channel);
    await ch.attach();
    const expected = await history(publisher, channel);
    await waitFor(() => ch.messages().length === 1, 10000, 'rewound message');
    assert.deepEqual(ch.messages(), expected);
  } finally {
    publisher.close();
    sse.close();
  }
});
