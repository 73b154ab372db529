/**
 * useConnectionState against the real server: through a network cut and
 * through a server restart the component shows `disconnected` and then
 * `connected` again, and the conversation rendered next to it carries on
 * (messages published after the reconnect appear).
 */

import './dom.js';

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import type { ConnectionState } from '@tether/client';
import { cleanup, render, screen, waitFor } from '@testing-library/react';

import { TetherProvider, useChannel, useConnectionState, useMessages } from '../src/index.js';
import { cut, makeClient, serverSuite, trackingWebSocket, type WS } from './server.js';

const server = serverSuite();
afterEach(() => cleanup());

function Status({ name, states }: { name: string; states: ConnectionState[] }) {
  const state = useConnectionState();
  const messages = useMessages(useChannel(name));
  if (states[states.length - 1] !== state) states.push(state);
  return (
    <div>
      <span data-testid="state">{state}</span>
      <span data-testid="texts">{messages.map((m) => String(m.data)).join('|')}</span>
    </div>
  );
}

const stateShown = () => screen.getByTestId('state').textContent;
const textsShown = () => screen.getByTestId('texts').textContent;

test('a cut connection: the state goes disconnected, then connected, and the view carries on', async () => {
  const name = 'chat:react-cut';
  const sockets: WS[] = [];
  const client = makeClient(server.url, { WebSocket: trackingWebSocket(sockets) });
  const other = makeClient(server.url);
  try {
    const states: ConnectionState[] = [];
    render(
      <TetherProvider client={client}>
        <Status name={name} states={states} />
      </TetherProvider>,
    );
    await waitFor(() => assert.equal(stateShown(), 'connected'), { timeout: 5000 });
    await other.channel(name).publish({ data: 'before' });
    await waitFor(() => assert.equal(textsShown(), 'before'), { timeout: 5000 });

    assert.equal(cut(sockets), 1);
    await waitFor(() => assert.ok(states.includes('disconnected'), states.join(',')), { timeout: 5000 });
    await waitFor(() => assert.equal(stateShown(), 'connected'), { timeout: 10000 });
    assert.ok(sockets.length >= 2, 'a new socket was opened');
    const fromConnected = states.slice(states.indexOf('connected'));
    assert.deepEqual(fromConnected.filter((s, i) => s !== fromConnected[i - 1]).slice(0, 2), ['connected', 'disconnected']);

    await other.channel(name).publish({ data: 'after' });
    await waitFor(() => assert.equal(textsShown(), 'before|after'), { timeout: 5000 });
  } finally {
    client.close();
    other.close();
  }
});

test('a server restart: disconnected while it is down, connected after, nothing lost', async () => {
  const name = 'chat:react-restart';
  const client = makeClient(server.url);
  try {
    const states: ConnectionState[] = [];
    render(
      <TetherProvider client={client}>
        <Status name={name} states={states} />
      </TetherProvider>,
    );
    await waitFor(() => assert.equal(stateShown(), 'connected'), { timeout: 5000 });
    const writer = makeClient(server.url);
    await writer.channel(name).publish({ data: 'one' });
    writer.close();
    await waitFor(() => assert.equal(textsShown(), 'one'), { timeout: 5000 });

    const downAt = states.length;
    await server.restart({ downMs: 500 });
    await waitFor(() => assert.ok(states.slice(downAt).includes('disconnected'), states.join(',')), { timeout: 5000 });
    await waitFor(() => assert.equal(stateShown(), 'connected'), { timeout: 15000 });

    const after = makeClient(server.url);
    try {
      await after.channel(name).publish({ data: 'two' });
    } finally {
      after.close();
    }
    await waitFor(() => assert.equal(textsShown(), 'one|two'), { timeout: 10000 });
    assert.equal(client.channel(name).messages().length, 2);
  } finally {
    client.close();
  }
});

test('closing the client shows closed', async () => {
  const client = makeClient(server.url);
  const states: ConnectionState[] = [];
  render(
    <TetherProvider client={client}>
      <Status name="chat:react-close" states={states} />
    </TetherProvider>,
  );
  await waitFor(() => assert.equal(stateShown(), 'connected'), { timeout: 5000 });
  client.close();
  await waitFor(() => assert.equal(stateShown(), 'closed'), { timeout: 5000 });
});
