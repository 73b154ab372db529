/**
 * usePublish against the real server, and the provider that owns its
 * client: a click publishes through the hook, the ack lands in the hook's
 * state and the message in the view; a refused mutation lands in `error`;
 * an owned client is created after mount (once per mount, even in Strict
 * Mode) and closed on unmount.
 */

import './dom.js';

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import { ErrorCodes, type TetherClient, TetherError } from '@tether/client';
import { cleanup, fireEvent, render, screen, waitFor } from '@testing-library/react';
import { StrictMode, useEffect } from 'react';

import {
  type PublishHandle,
  TetherProvider,
  useChannel,
  useConnectionState,
  useMessages,
  usePublish,
  useTetherClient,
} from '../src/index.js';
import { clientOptions, makeClient, serverSuite } from './server.js';

const server = serverSuite();
afterEach(() => cleanup());

/** A composer: a send button, a bad append, the hook's state, and the view. */
function Composer({ name, handles }: { name: string; handles: PublishHandle[] }) {
  const channel = useChannel(name);
  const messages = useMessages(channel);
  const state = useConnectionState();
  const out = usePublish(channel);
  handles.push(out);
  return (
    <div>
      <span data-testid="state">{state}</span>
      <button type="button" onClick={() => void out.publish({ name: 'prompt', data: 'hi from react' }).catch(() => undefined)}>
        send
      </button>
      <button type="button" onClick={() => void out.append('0000000000001-0000000000009999', 'x').catch(() => undefined)}>
        bad
      </button>
      <output data-testid="pending">{out.pending}</output>
      <output data-testid="ack">{out.lastAck?.serial ?? ''}</output>
      <output data-testid="error">{out.error?.code ?? ''}</output>
      <ol>
        {messages.map((m) => (
          <li key={m.serial} data-testid={`m-${m.serial}`}>
            {String(m.data)}
          </li>
        ))}
      </ol>
    </div>
  );
}

test('publish through the hook: the ack is in its state and the message in the view', async () => {
  const name = 'chat:react-publish';
  const client = makeClient(server.url);
  try {
    const handles: PublishHandle[] = [];
    render(
      <TetherProvider client={client}>
        <Composer name={name} handles={handles} />
      </TetherProvider>,
    );
    await waitFor(() => assert.equal(screen.getByTestId('state').textContent, 'connected'), { timeout: 5000 });
    fireEvent.click(screen.getByText('send'));
    assert.ok(handles.some((h) => h.pending === 1), 'pending counted the call in flight');
    await waitFor(() => assert.notEqual(screen.getByTestId('ack').textContent, ''), { timeout: 5000 });
    const serial = screen.getByTestId('ack').textContent ?? '';
    await waitFor(() => assert.equal(screen.getByTestId(`m-${serial}`).textContent, 'hi from react'), { timeout: 5000 });
    assert.equal(screen.getByTestId('pending').textContent, '0');
    const stored = await client.channel(name).message(serial);
    assert.equal(stored.data, 'hi from react');
    assert.equal(stored.name, 'prompt');

    // The promise the helper returns is the SDK's: it resolves with the ack.
    const ack = await handles[handles.length - 1]!.publish({ data: 'awaited' });
    assert.equal(ack.duplicate, false);
    await waitFor(() => assert.equal(screen.getByTestId(`m-${ack.serial}`).textContent, 'awaited'), { timeout: 5000 });
    await waitFor(() => assert.equal(screen.getByTestId('ack').textContent, ack.serial), { timeout: 5000 });

    // A refused mutation: its error is in the hook's state.
    fireEvent.click(screen.getByText('bad'));
    await waitFor(() => assert.equal(screen.getByTestId('error').textContent, String(ErrorCodes.MessageNotFound)), { timeout: 5000 });
    assert.equal(screen.getByTestId('pending').textContent, '0');
    // Functions stay the same across renders.
    assert.ok(handles.every((h) => h.publish === handles[0]?.publish));
  } finally {
    client.close();
  }
});

/** Reports each client it sees in context. */
function Spy({ seen }: { seen: (TetherClient | null)[] }) {
  const client = useTetherClient();
  useEffect(() => {
    seen.push(client);
  }, [client, seen]);
  return null;
}

test('a provider with options owns its client: none before mount, one after (also in Strict Mode), closed on unmount', async () => {
  const name = 'chat:react-owned';
  const seen: (TetherClient | null)[] = [];
  const handles: PublishHandle[] = [];
  const view = render(
    <StrictMode>
      <TetherProvider options={clientOptions(server.url)}>
        <Spy seen={seen} />
        <Composer name={name} handles={handles} />
      </TetherProvider>
    </StrictMode>,
  );
  assert.equal(seen[0], null, 'no client during the first render');
  // With no client the helpers reject instead of doing nothing.
  await assert.rejects(handles[0]!.publish({ data: 'too early' }), (e: unknown) => e instanceof TetherError && e.code === ErrorCodes.NotAttached);

  await waitFor(() => assert.equal(screen.getByTestId('state').textContent, 'connected'), { timeout: 5000 });
  const clients = seen.filter((c): c is TetherClient => c !== null);
  const current = clients[clients.length - 1]!;
  // Strict Mode mounts effects twice: the first client was closed, the live one is the last.
  for (const c of clients) if (c !== current) assert.equal(c.state, 'closed');
  assert.equal(current.state, 'connected');

  fireEvent.click(screen.getByText('send'));
  await waitFor(() => assert.notEqual(screen.getByTestId('ack').textContent, ''), { timeout: 5000 });
  const serial = screen.getByTestId('ack').textContent ?? '';
  await waitFor(() => assert.equal(screen.getByTestId(`m-${serial}`).textContent, 'hi from react'), { timeout: 5000 });

  view.unmount();
  assert.equal(current.state, 'closed', 'the owned client is closed on unmount');
});

test('a hook outside any provider says so', () => {
  const errors = console.error;
  console.error = () => undefined; // React logs the thrown error too
  try {
    assert.throws(() => render(<Composer name="x" handles={[]} />), /inside a <TetherProvider>/);
  } finally {
    console.error = errors;
  }
});
