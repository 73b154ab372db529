/**
 * Hydration in jsdom: HTML rendered on the "server" with renderToString is
 * hydrated with `hydrateRoot` by a client whose channel restored a saved
 * view. Because the hooks use the server snapshot for the hydrating render,
 * React reports no mismatch; right after, the component shows the saved
 * view, then live messages.
 */

import './dom.js';

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { MemoryStorage } from '@tether/client';
import { act, waitFor } from '@testing-library/react';
import { hydrateRoot } from 'react-dom/client';
import { renderToString } from 'react-dom/server';

import { TetherProvider, useChannel, useMessages } from '../src/index.js';
import { makeClient, serverSuite, until } from './server.js';

const server = serverSuite();

function List({ name }: { name: string }) {
  const messages = useMessages(useChannel(name));
  return (
    <ul id="list" data-count={messages.length}>
      {messages.map((m) => (
        <li key={m.serial}>{String(m.data)}</li>
      ))}
    </ul>
  );
}

test('hydrating over server HTML: no mismatch, then the saved view, then live messages', async () => {
  const name = 'chat:hydrate';
  const storage = new MemoryStorage();
  const first = makeClient(server.url, { persist: storage });
  const ch = first.channel(name);
  await ch.publish({ data: 'a' });
  await ch.publish({ data: 'b' });
  await ch.attach();
  await until(() => ch.messages().length === 2, 'the first client to see both messages');
  first.close();

  const client = makeClient(server.url, { persist: storage });
  const errors: unknown[] = [];
  try {
    const ui = (
      <TetherProvider client={client}>
        <List name={name} />
      </TetherProvider>
    );
    const container = document.createElement('div');
    container.innerHTML = renderToString(ui);
    document.body.append(container);
    assert.equal(container.querySelector('#list')?.getAttribute('data-count'), '0');

    const root = await act(async () =>
      hydrateRoot(container, ui, {
        onRecoverableError: (e) => errors.push(e),
      }),
    );
    await waitFor(() => assert.equal(container.querySelector('#list')?.getAttribute('data-count'), '2'), { timeout: 5000 });
    assert.deepEqual(
      [...container.querySelectorAll('li')].map((li) => li.textContent),
      ['a', 'b'],
    );
    const writer = makeClient(server.url);
    await writer.channel(name).publish({ data: 'c' });
    writer.close();
    await waitFor(() => assert.equal(container.querySelectorAll('li').length, 3), { timeout: 5000 });
    assert.deepEqual(errors, [], 'React reported a hydration mismatch');
    root.unmount();
  } finally {
    client.close();
  }
});
