/**
 * usePresence with two clients on the real server: each renders the member
 * set; entering, updating and leaving through the hook's helpers show up in
 * both components; the helpers keep their identity across renders.
 */

import './dom.js';

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import { cleanup, render, waitFor, within } from '@testing-library/react';

import { type PresenceHandle, TetherProvider, useChannel, usePresence } from '../src/index.js';
import { makeClient, serverSuite } from './server.js';

const server = serverSuite();
afterEach(() => cleanup());

/** Shows the members as `connection_id: name`; hands its presence handle to the test. */
function Who({ name, handles }: { name: string; handles: PresenceHandle[] }) {
  const channel = useChannel(name, { presence: true });
  const presence = usePresence(channel);
  handles.push(presence);
  return (
    <ul>
      {presence.members.map((m) => (
        <li key={m.connection_id} data-conn={m.connection_id}>
          {(m.data as { name?: string } | null)?.name ?? '?'}
        </li>
      ))}
    </ul>
  );
}

/** `connection_id: name` of every member a container shows, sorted. */
function shown(container: HTMLElement): string[] {
  return within(container)
    .queryAllByRole('listitem')
    .map((li) => `${li.dataset['conn']}: ${li.textContent}`)
    .sort();
}

const last = <T,>(list: T[]): T => {
  const item = list[list.length - 1];
  if (item === undefined) throw new Error('nothing rendered yet');
  return item;
};

test('presence of two clients: enter, update and leave through the hook show in both components', async () => {
  const name = 'room:react-presence';
  const alice = makeClient(server.url);
  const bob = makeClient(server.url);
  try {
    const aHandles: PresenceHandle[] = [];
    const bHandles: PresenceHandle[] = [];
    const a = render(
      <TetherProvider client={alice}>
        <Who name={name} handles={aHandles} />
      </TetherProvider>,
    );
    const b = render(
      <TetherProvider client={bob}>
        <Who name={name} handles={bHandles} />
      </TetherProvider>,
    );
    await waitFor(() => assert.ok(alice.connectionId && bob.connectionId), { timeout: 5000 });

    await last(aHandles).enter({ name: 'alice' });
    await last(bHandles).enter({ name: 'bob' });
    const both = [`${alice.connectionId}: alice`, `${bob.connectionId}: bob`].sort();
    await waitFor(() => assert.deepEqual(shown(a.container), both), { timeout: 5000 });
    await waitFor(() => assert.deepEqual(shown(b.container), both), { timeout: 5000 });

    await last(bHandles).update({ name: 'bob (away)' });
    await waitFor(() => assert.ok(shown(a.container).includes(`${bob.connectionId}: bob (away)`)), { timeout: 5000 });

    await last(bHandles).leave();
    const onlyAlice = [`${alice.connectionId}: alice`];
    await waitFor(() => assert.deepEqual(shown(a.container), onlyAlice), { timeout: 5000 });
    await waitFor(() => assert.deepEqual(shown(b.container), onlyAlice), { timeout: 5000 });

    // Several renders happened; the helpers stayed the same functions.
    assert.ok(aHandles.length >= 3);
    assert.ok(aHandles.every((h) => h.enter === aHandles[0]?.enter && h.leave === aHandles[0]?.leave));
    // The members array changes only with the member set.
    assert.equal(last(aHandles).members, alice.channel(name).presence.members());

    // Closing Alice's client (a clean close) removes her at once.
    alice.close();
    await waitFor(() => assert.deepEqual(shown(b.container), []), { timeout: 5000 });
  } finally {
    alice.close();
    bob.close();
  }
});
