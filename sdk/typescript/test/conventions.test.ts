/**
 * The interrupt and handoff conventions (docs/patterns.md) through the
 * helpers: cancel ends a streaming response, steer and handoff messages,
 * stream status in the view, and ephemeral (live-only) messages.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import {
  type EphemeralMessage,
  ErrorCodes,
  handoffAction,
  isStreamEnded,
  streamStatus,
  targetOf,
  TetherError,
} from '../src/index.js';
import { history, makeClient, type Server, sleep, startServer, waitFor } from './server.js';

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

test('cancel ends a streaming message as cancelled; the agent\'s next append is refused with 40901', async () => {
  const channel = 'chat:cancel';
  const agent = makeClient(server.url);
  const user = makeClient(server.url);
  try {
    const ach = agent.channel(channel);
    const uch = user.channel(channel);
    await uch.attach();
    const { serial } = await ach.publish({ name: 'response', data: '', extras: { role: 'assistant', stream: 'streaming' } });
    await ach.append(serial, 'Once upon');
    await waitFor(() => uch.messages()[0]?.data === 'Once upon', 5000, 'user sees the stream');
    const response = uch.messages()[0];
    assert.equal(streamStatus(response), 'streaming');
    assert.equal(isStreamEnded(streamStatus(response)), false);

    const cancel = await uch.cancel(serial);
    await assert.rejects(ach.append(serial, ' a time'), (e: TetherError) => e instanceof TetherError && e.code === ErrorCodes.StreamEnded);

    await waitFor(() => streamStatus(uch.messages().find((m) => m.serial === serial)) === 'cancelled', 5000, 'status cancelled in the view');
    const stored = await uch.message(serial);
    assert.equal(streamStatus(stored), 'cancelled');
    assert.equal(stored.data, 'Once upon');
    assert.ok(isStreamEnded(streamStatus(stored)));
    const cancelMsg = await uch.message(cancel.serial);
    assert.equal(cancelMsg.name, 'cancel');
    assert.equal(targetOf(cancelMsg), serial);

    const steer = await uch.steer(serial, 'Shorter, please.');
    const steerMsg = await uch.message(steer.serial);
    assert.equal(steerMsg.name, 'steer');
    assert.equal(steerMsg.data, 'Shorter, please.');
    assert.equal(targetOf(steerMsg), serial);

    // Handoff (--dev grants every capability, including operator).
    const claim = await uch.claim();
    assert.equal(handoffAction(await uch.message(claim.serial)), 'claim');
    const release = await uch.release();
    assert.equal(handoffAction(await uch.message(release.serial)), 'release');

    const expected = await history(agent, channel);
    await waitFor(() => uch.messages().length === expected.length, 5000, 'view complete');
    assert.deepEqual(uch.messages(), expected);
    assert.equal(streamStatus({ extras: { stream: 'done' } }), undefined, 'only documented statuses');
  } finally {
    agent.close();
    user.close();
  }
});

test('ephemeral messages reach subscribers (WebSocket and SSE) and are not in history', async () => {
  const channel = 'chat:ephemeral';
  const agent = makeClient(server.url);
  const user = makeClient(server.url);
  const sse = makeClient(server.url, { transport: 'sse' });
  try {
    const uch = user.channel(channel);
    const got: EphemeralMessage[] = [];
    const messages: unknown[] = [];
    uch.subscribe((m) => messages.push(m));
    uch.onEphemeral((m) => got.push(m));
    await uch.attach();
    const sch = sse.channel(channel);
    const gotSse: EphemeralMessage[] = [];
    sch.onEphemeral((m) => gotSse.push(m));
    await sch.attach();
    await waitFor(() => sse.state === 'connected', 5000, 'SSE open');

    const ach = agent.channel(channel);
    await ach.publish({ name: 'response', data: 'kept' });
    await ach.publishEphemeral({ name: 'tool', data: 'searching flights', extras: { step: 1 } });
    await ach.publishEphemeral({ name: 'typing', data: true });
    await waitFor(() => got.length === 2, 5000, 'two ephemeral messages');
    assert.equal(got[0]?.name, 'tool');
    assert.equal(got[0]?.data, 'searching flights');
    assert.deepEqual(got[0]?.extras, { step: 1 });
    assert.equal(got[0]?.connection_id, agent.connectionId);
    assert.ok(got[0]?.id && typeof got[0]?.timestamp === 'number');
    assert.equal(got[1]?.name, 'typing');
    await waitFor(() => gotSse.length === 2, 5000, 'SSE gets them too');
    assert.equal(gotSse[1]?.data, true);

    await sleep(100);
    assert.equal(messages.length, 1, 'ephemeral messages are not channel events');
    assert.equal(uch.messages().length, 1, 'nor in the view');
    const all = await history(agent, channel);
    assert.deepEqual(all.map((m) => m.data), ['kept'], 'nor in history');

    // A late joiner's rewind does not replay them.
    const late = makeClient(server.url);
    try {
      const lch = late.channel(channel);
      const lateGot: EphemeralMessage[] = [];
      lch.onEphemeral((m) => lateGot.push(m));
      await lch.attach();
      await waitFor(() => lch.messages().length === 1, 5000, 'late joiner rewound');
      await sleep(100);
      assert.equal(lateGot.length, 0);
    } finally {
      late.close();
    }
    await assert.rejects(sch.publishEphemeral({ data: 1 }), (e: TetherError) => e.code === ErrorCodes.Unsupported);
  } finally {
    agent.close();
    user.close();
    sse.close();
  }
});
