/**
 * useChannel + useMessages against the real server: a response streamed as
 * many appends into one message re-renders the component with the folded
 * text (never anything but a prefix of the final text), updates and deletes
 * re-render it, snapshots are stable when nothing changed, and a channel
 * nobody renders any more is detached.
 */

import './dom.js';

import assert from 'node:assert/strict';
import { afterEach, test } from 'node:test';

import type { Message, TetherClient } from '@tether/client';
import { cleanup, render, screen, waitFor } from '@testing-library/react';

import { channelHolders, TetherProvider, useChannel, useMessages } from '../src/index.js';
import { makeClient, sleep, serverSuite } from './server.js';

const server = serverSuite();
afterEach(() => cleanup());

const textOf = (m: Message): string => (m.data === null ? '(deleted)' : String(m.data));

/** Renders the conversation and records every array it rendered. */
function Conversation({ name, renders, graceMs }: { name: string; renders: (readonly Message[])[]; graceMs?: number }) {
  const channel = useChannel(name, graceMs === undefined ? {} : { detachGraceMs: graceMs });
  const messages = useMessages(channel);
  renders.push(messages);
  return (
    <ol>
      {messages.map((m) => (
        <li key={m.serial} data-testid={m.serial} data-action={m.action}>
          {textOf(m)}
        </li>
      ))}
    </ol>
  );
}

async function history(client: TetherClient, channel: string): Promise<Message[]> {
  const all: Message[] = [];
  for await (const page of client.channel(channel).history({ direction: 'forwards', limit: 1000 })) all.push(...page.messages);
  return all;
}

test('a response streamed into one message re-renders with the folded text, equal to history', async () => {
  const name = 'chat:react-stream';
  const viewer = makeClient(server.url);
  const agent = makeClient(server.url);
  try {
    const renders: (readonly Message[])[] = [];
    render(
      <TetherProvider client={viewer}>
        <Conversation name={name} renders={renders} />
      </TetherProvider>,
    );
    const out = agent.channel(name);
    const { serial } = await out.publish({ name: 'response', data: '', extras: { stream: 'streaming' } });
    const tokens = Array.from({ length: 60 }, (_, i) => `t${i + 1} `);
    for (const [i, token] of tokens.entries()) {
      void out.append(serial, token);
      if (i % 6 === 5) await sleep(30); // let some renders happen mid-stream
    }
    await out.update(serial, { extras: { stream: 'complete' } });
    const full = tokens.join('');

    await waitFor(() => assert.equal(screen.getByTestId(serial).textContent, full), { timeout: 10000 });
    const stored = await history(agent, name);
    assert.equal(stored.length, 1, 'one message for the whole response');
    assert.equal(stored[0]?.data, full);
    await waitFor(() => assert.deepEqual(renders[renders.length - 1], stored), { timeout: 5000 });

    // Every render showed a prefix of the answer, and it grew over several renders.
    const seen = renders.map((r) => r.find((m) => m.serial === serial)).filter((m) => m !== undefined).map((m) => String(m.data));
    for (const text of seen) assert.ok(full.startsWith(text), `rendered text is not a prefix: ${text}`);
    const distinct = new Set(seen);
    assert.ok(distinct.size >= 3, `expected the text to grow over several renders, saw ${distinct.size} distinct texts`);
    assert.ok(renders.length < 200, `${renders.length} renders for 60 fragments: re-rendering without changes`);

    // An update and a delete re-render too.
    await out.update(serial, { data: 'replaced answer' });
    await waitFor(() => assert.equal(screen.getByTestId(serial).textContent, 'replaced answer'), { timeout: 5000 });
    await out.delete(serial);
    await waitFor(() => assert.equal(screen.getByTestId(serial).textContent, '(deleted)'), { timeout: 5000 });
    assert.equal(screen.getByTestId(serial).dataset['action'], 'delete');
  } finally {
    viewer.close();
    agent.close();
  }
});

test('snapshots are stable: a re-render with no change gets the same array, and no getSnapshot warning', async () => {
  const name = 'chat:react-stable';
  const client = makeClient(server.url);
  const errors: unknown[][] = [];
  const original = console.error;
  console.error = (...args: unknown[]) => {
    errors.push(args);
    original(...args);
  };
  try {
    await client.channel(name).publish({ data: 'hello' });
    const renders: (readonly Message[])[] = [];
    const ui = (n: number) => (
      <TetherProvider client={client}>
        <div data-n={n}>
          <Conversation name={name} renders={renders} />
        </div>
      </TetherProvider>
    );
    const { rerender } = render(ui(1));
    await waitFor(() => assert.equal(renders[renders.length - 1]?.length, 1), { timeout: 5000 });
    const before = renders.length;
    rerender(ui(2));
    rerender(ui(3));
    assert.equal(renders.length, before + 2, 'the parent re-rendered twice');
    const last = renders.slice(-3);
    assert.ok(last[0] === last[1] && last[1] === last[2], 'the same array reference while nothing changed');
    assert.equal(Object.isFrozen(last[2]), true);

    await client.channel(name).publish({ data: 'second' });
    await waitFor(() => assert.equal(renders[renders.length - 1]?.length, 2), { timeout: 5000 });
    assert.notEqual(renders[renders.length - 1], last[2], 'a change is a new array');
    assert.deepEqual(
      errors.filter((e) => String(e[0]).includes('getSnapshot')),
      [],
      'React warned about an uncached getSnapshot',
    );
  } finally {
    console.error = original;
    client.close();
  }
});

test('the channel stays attached while rendered and is detached after the last user unmounts', async () => {
  const name = 'chat:react-lease';
  const client = makeClient(server.url);
  try {
    const renders: (readonly Message[])[] = [];
    const first = render(
      <TetherProvider client={client}>
        <Conversation name={name} renders={renders} graceMs={50} />
        <Conversation name={name} renders={renders} graceMs={50} />
      </TetherProvider>,
    );
    const channel = client.channel(name);
    await waitFor(() => assert.equal(channel.state, 'attached'), { timeout: 5000 });
    assert.equal(channelHolders(channel), 2);
    first.unmount();
    assert.equal(channelHolders(channel), 0);
    await waitFor(() => assert.equal(channel.state, 'detached'), { timeout: 5000 });

    // Published while nobody watched: mounting again resumes and shows it.
    await makeClientAndPublish(server.url, name, 'while away');
    render(
      <TetherProvider client={client}>
        <Conversation name={name} renders={renders} graceMs={50} />
      </TetherProvider>,
    );
    await waitFor(() => assert.equal(screen.getByRole('listitem').textContent, 'while away'), { timeout: 5000 });
    assert.equal(channel.state, 'attached');
  } finally {
    client.close();
  }
});

async function makeClientAndPublish(url: string, name: string, data: string): Promise<void> {
  const other = makeClient(url);
  try {
    await other.channel(name).publish({ data });
  } finally {
    other.close();
  }
}
