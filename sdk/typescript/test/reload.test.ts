/**
 * Test 2: page-refresh survival. Client A saves its view and position to a
 * Storage; client B, built later on the same Storage, shows the view at once
 * and resumes from A's position without replaying what A had.
 * Also: a stored position the server cannot honour ends in continuity lost.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ErrorCodes, type Message, TetherError } from '../src/index.js';
import { assertNoDuplicates, history, makeClient, MemoryStorage, type Server, startServer, waitFor } from './server.js';

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const fragments = (m: Message | undefined) => ((m?.data as string | undefined) ?? '').split(' ').length - 1;

test('reload: B restores A\'s view and resumes without replaying', async () => {
  const channel = 'chat:reload';
  const storage = new MemoryStorage();
  const publisher = makeClient(server.url);
  const a = makeClient(server.url, { persist: storage });
  let b: ReturnType<typeof makeClient> | undefined;
  try {
    const chA = a.channel(channel);
    let eventsA = 0;
    chA.subscribe(() => eventsA++);
    await chA.attach();

    const pub = publisher.channel(channel);
    const { serial } = await pub.publish({ name: 'response', data: '' });
    const first = [];
    for (let i = 0; i < 50; i++) first.push(pub.append(serial, `a${i} `));
    await Promise.all(first);
    await waitFor(() => fragments(chA.messages()[0]) === 50, 10000, 'A to see 50 fragments');
    const viewA = chA.messages();
    const positionA = chA.position;
    assert.ok(positionA, 'A holds a position');
    assert.equal(eventsA, 51);
    a.close(); // the "page" goes away; state is flushed to storage

    const rest = [];
    for (let i = 50; i < 100; i++) rest.push(pub.append(serial, `a${i} `));
    await Promise.all(rest);

    b = makeClient(server.url, { persist: storage });
    const chB = b.channel(channel);
    assert.deepEqual(chB.messages(), viewA, 'B shows A\'s view before connecting');
    assert.equal(chB.position, positionA);
    const eventsB: Message[] = [];
    const continuities: string[] = [];
    chB.on('attached', (r) => continuities.push(r.continuity));
    chB.subscribe((e) => eventsB.push(e));

    const expected = await history(publisher, channel);
    await waitFor(() => fragments(chB.messages()[0]) === 100, 10000, 'B to catch up');
    assert.deepEqual(chB.messages(), expected);
    assert.equal(continuities[0], 'resumed');
    assert.equal(eventsB.length, 50, 'B got only what A had not');
    assert.ok(eventsB.every((e) => e.action === 'append' && e.version.serial > (viewA[0]?.version.serial ?? '')));
    assertNoDuplicates(eventsB);
  } finally {
    publisher.close();
    a.close();
    b?.close();
  }
});

test('a stored position from another epoch: continuity lost, view replaced by current state', async () => {
  const channel = 'chat:lost';
  const publisher = makeClient(server.url);
  const storage = new MemoryStorage();
  let c: ReturnType<typeof makeClient> | undefined;
  try {
    const pub = publisher.channel(channel);
    await pub.publish({ data: 'one' });
    await pub.publish({ data: 'two' });
    const fake: Message = {
      serial: '0000000000001-0000000000000001',
      id: 'stale',
      data: 'from a log that no longer exists',
      timestamp: 1,
      action: 'create',
      version: { serial: '0000000000001-0000000000000001', timestamp: 1 },
    };
    storage.setItem(
      `tether:${server.url}:${channel}`,
      JSON.stringify({ v: 1, position: '0000000000001-0000000000000001', messages: [fake] }),
    );
    c = makeClient(server.url, { persist: storage });
    const ch = c.channel(channel);
    assert.equal(ch.messages().length, 1, 'the stale view is restored first');
    const lost: TetherError[] = [];
    ch.on('continuity-lost', (e) => lost.push(e));
    const result = await ch.attach();
    assert.equal(result.continuity, 'lost');
    assert.equal(result.error?.code, ErrorCodes.ContinuityLost);
    assert.equal(lost.length, 1);
    assert.ok(lost[0] instanceof TetherError);
    const expected = await history(publisher, channel);
    await waitFor(() => ch.messages().length === 2, 10000, 'current state after continuity lost');
    assert.deepEqual(ch.messages(), expected);
  } finally {
    publisher.close();
    c?.close();
  }
});
