/**
 * Server rendering with `react-dom/server` `renderToString`, in plain Node
 * (no DOM): every hook renders its server snapshot, and nothing touches
 * `window`, `document`, `sessionStorage` or a WebSocket. With a provider
 * given options no client is even created; with a borrowed client whose
 * channel already holds a saved view, the server still renders the empty
 * snapshot (what hydration must match) and opens no socket.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MemoryStorage, type WebSocketConstructor } from '@tether/client';
import { renderToString } from 'react-dom/server';

import { TetherProvider, useChannel, useConnectionState, useMessages, usePresence, usePublish } from '../src/index.js';
import { makeClient, serverSuite, until, WS } from './server.js';

const server = serverSuite();

/** Counts reads of browser globals while installed. */
function trapBrowserGlobals(): { reads: string[]; restore: () => void } {
  const reads: string[] = [];
  const names = ['window', 'document', 'sessionStorage', 'localStorage', 'WebSocket', 'EventSource'];
  const g = globalThis as Record<string, unknown>;
  const saved = names.map((n) => [n, Object.getOwnPropertyDescriptor(g, n)] as const);
  for (const n of names) {
    Object.defineProperty(g, n, {
      configurable: true,
      get() {
        reads.push(n);
        return undefined;
      },
    });
  }
  return {
    reads,
    restore() {
      for (const [n, d] of saved) {
        if (d) Object.defineProperty(g, n, d);
        else delete g[n];
      }
    },
  };
}

/** A WebSocket constructor that counts constructions and never connects. */
function countingWebSocket(): { count: () => number; WebSocket: WebSocketConstructor } {
  let n = 0;
  class Counting extends WS {
    constructor(url: string, protocols?: string | string[]) {
      n++;
      super(url, protocols);
    }
  }
  return { count: () => n, WebSocket: Counting };
}

/** Uses every hook, and shows what each returned. */
function App({ name }: { name: string }) {
  const channel = useChannel(name, { presence: true });
  const messages = useMessages(channel);
  const { members } = usePresence(channel);
  const { pending } = usePublish(channel);
  const state = useConnectionState();
  return (
    <main>
      <p id="state">{state}</p>
      <p id="channel">{channel ? 'channel' : 'no channel'}</p>
      <p id="messages">{messages.length} messages</p>
      <p id="members">{members.length} members</p>
      <p id="pending">{pending} pending</p>
    </main>
  );
}

test('renderToString with a provider given options: empty snapshots, no client, no browser global touched', () => {
  const ws = countingWebSocket();
  const trap = trapBrowserGlobals();
  let html: string;
  try {
    html = renderToString(
      <TetherProvider options={{ url: server.url, WebSocket: ws.WebSocket }}>
        <App name="chat:ssr" />
      </TetherProvider>,
    );
  } finally {
    trap.restore();
  }
  assert.match(html, /<p id="state">initialized<\/p>/);
  assert.match(html, /<p id="channel">no channel<\/p>/);
  assert.match(html, /<p id="messages">0<!-- --> messages<\/p>/);
  assert.match(html, /<p id="members">0<!-- --> members<\/p>/);
  assert.match(html, /<p id="pending">0<!-- --> pending<\/p>/);
  assert.equal(ws.count(), 0, 'no WebSocket was constructed');
  assert.deepEqual(trap.reads, [], 'browser globals were read during the server render');
});

test('renderToString with a borrowed client: the server snapshot, not the saved view, and no socket', async () => {
  const name = 'chat:ssr-borrowed';
  const storage = new MemoryStorage();
  // A first client fills the saved view (persistence on), then closes.
  const first = makeClient(server.url, { persist: storage });
  const ch = first.channel(name);
  await ch.publish({ data: 'saved one' });
  await ch.publish({ data: 'saved two' });
  await ch.attach();
  await until(() => ch.messages().length === 2, 'the first client to see both messages');
  first.close();

  const ws = countingWebSocket();
  const client = makeClient(server.url, { persist: storage, WebSocket: ws.WebSocket, autoConnect: false });
  try {
    assert.equal(client.channel(name).messages().length, 2, 'the client restored the saved view');
    const trap = trapBrowserGlobals();
    let html: string;
    try {
      html = renderToString(
        <TetherProvider client={client}>
          <App name={name} />
        </TetherProvider>,
      );
    } finally {
      trap.restore();
    }
    assert.match(html, /<p id="channel">channel<\/p>/);
    assert.match(html, /<p id="messages">0<!-- --> messages<\/p>/, 'the server renders the server snapshot');
    assert.match(html, /<p id="state">initialized<\/p>/);
    assert.deepEqual(trap.reads, []);
    assert.equal(ws.count(), 0, 'rendering opened no socket: subscriptions and attaches happen in effects only');
    assert.equal(client.channel(name).state, 'initialized', 'the render did not attach the channel');
  } finally {
    client.close();
  }
});
