/**
 * Tests 3, 5, 6: update/delete converge across clients; idempotent
 * publish; errors surface as TetherError with the documented codes.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ErrorCodes, TetherError } from '../src/index.js';
import { history, makeClient, type Server, startServer, waitFor } from './server.js';

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

function equalTo<T>(get: () => T, expected: T): () => boolean {
  return () => {
    try {
      assert.deepEqual(get(), expected);
      return true;
    } catch {
      return false;
    }
  };
}

test('update and delete converge across two clients', async () => {
  const channel = 'chat:converge';
  const one = makeClient(server.url);
  const two = makeClient(server.url);
  try {
    const c1 = one.channel(channel);
    const c2 = two.channel(channel);
    await Promise.all([c1.attach(), c2.attach()]);
    const m1 = await c1.publish({ name: 'prompt', data: 'helo', extras: { role: 'user', lang: 'en' } });
    const m2 = await c1.publish({ name: 'response', data: 'to be deleted' });
    const m3 = await c2.publish({ name: 'response', data: 'Hel' });
    await Promise.all([
      c2.update(m1.serial, { data: 'hello', extras: { lang: null, edited: true }, description: 'typo' }),
      c1.delete(m2.serial, { description: 'retracted' }),
      c1.append(m3.serial, 'lo', { extras: { stream: 'done' } }),
    ]);
    const expected = await history(one, channel);
    await waitFor(equalTo(() => c1.messages(), expected), 10000, 'client one converges');
    await waitFor(equalTo(() => c2.messages(), expected), 10000, 'client two converges');
    const [a, b, c] = expected;
    assert.equal(a?.data, 'hello');
    assert.deepEqual(a?.extras, { role: 'user', edited: true });
    assert.equal(a?.action, 'update');
    assert.equal(a?.version.description, 'typo');
    assert.equal(b?.data, null);
    assert.equal(b?.action, 'delete');
    assert.equal(c?.data, 'Hello');
    assert.deepEqual(c?.extras, { stream: 'done' });

    const versions = await c2.versions(m1.serial);
    assert.deepEqual(versions.map((v) => v.data), ['helo', 'hello']);
    assert.deepEqual(await c1.message(m2.serial), b);

    const seen: unknown[] = [];
    const off = c2.onMessages((ms) => seen.push(ms));
    assert.equal(seen.length, 1, 'onMessages calls back at once with the current view');
    await c1.update(m3.serial, { data: 'Hello!' });
    await waitFor(() => seen.length >= 2, 10000, 'onMessages after an update');
    off();
  } finally {
    one.close();
    two.close();
  }
});

test('publish with the same id twice stores one message; the second ack is a duplicate', async () => {
  const channel = 'chat:idempotent';
  const client = makeClient(server.url);
  try {
    const ch = client.channel(channel);
    const first = await ch.publish({ id: 'fixed-id-1', data: 'once' });
    const second = await ch.publish({ id: 'fixed-id-1', data: 'once' });
    assert.equal(first.duplicate, false);
    assert.equal(second.duplicate, true);
    assert.equal(second.serial, first.serial);
    // Over REST too.
    const third = await client.rest.publish(channel, { id: 'fixed-id-1', data: 'once' });
    assert.equal(third.duplicate, true);
    assert.equal(third.serial, first.serial);
    const generated = await ch.publish({ data: 'an id is generated' });
    const all = await history(client, channel);
    assert.equal(all.length, 2);
    assert.equal(all.filter((m) => m.id === 'fixed-id-1').length, 1);
    assert.ok(all.find((m) => m.serial === generated.serial)?.id, 'generated publishes carry an id');
  } finally {
    client.close();
  }
});

async function rejectsWith(p: Promise<unknown>, code: number): Promise<TetherError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof TetherError, `expected TetherError, got ${String(err)}`);
    assert.equal(err.code, code, `expected code ${code}, got ${err.code}: ${err.message}`);
    return err;
  }
  assert.fail(`expected rejection with ${code}`);
}

test('errors surface as TetherError with the documented codes', async () => {
  const channel = 'chat:errors';
  const client = makeClient(server.url);
  try {
    const ch = client.channel(channel);
    const { serial } = await ch.publish({ data: 'text' });
    const epoch = serial.split('-')[0];
    const unknown = `${epoch}-9999999999999999`;
    await rejectsWith(ch.append(unknown, 'x'), ErrorCodes.MessageNotFound);
    await rejectsWith(ch.update(unknown, { data: 'x' }), ErrorCodes.MessageNotFound);

    const obj = await ch.publish({ data: { not: 'a string' } });
    await rejectsWith(ch.append(obj.serial, 'x'), ErrorCodes.AppendTypeMismatch);

    await ch.delete(serial);
    await rejectsWith(ch.append(serial, 'x'), ErrorCodes.MessageDeleted);
    await rejectsWith(ch.delete(serial), ErrorCodes.MessageDeleted);

    await rejectsWith(ch.publish({ id: 'has a space', data: 'x' }), ErrorCodes.InvalidMessageId);

    // Pipelined: a failing append does not disturb its neighbours.
    const results = await Promise.allSettled([ch.append(obj.serial, 'x'), ch.publish({ data: 'fine' })]);
    assert.equal(results[0].status, 'rejected');
    assert.equal(results[1].status, 'fulfilled');

    // REST errors carry the HTTP status too.
    const rest = await rejectsWith(ch.message(unknown), ErrorCodes.MessageNotFound);
    assert.equal(rest.statusCode, 404);
    await rejectsWith(client.rest.append(channel, unknown, 'x'), ErrorCodes.MessageNotFound);

    // A bad channel name fails the attach.
    const bad = client.channel('no spaces allowed');
    const errors: TetherError[] = [];
    bad.on('error', (e) => errors.push(e));
    await rejectsWith(bad.attach(), ErrorCodes.InvalidChannelName);
    assert.equal(bad.state, 'failed');
    assert.equal(errors[0]?.code, ErrorCodes.InvalidChannelName);
  } finally {
    client.close();
  }
});

test('close rejects pending requests with ClientClosed', async () => {
  const client = makeClient(server.url, { autoConnect: false });
  const p = client.channel('chat:closed').publish({ data: 'never sent' });
  client.close();
  await rejectsWith(p, ErrorCodes.ClientClosed);
  assert.equal(client.state, 'closed');
});
