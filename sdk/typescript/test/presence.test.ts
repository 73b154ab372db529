/**
 * Presence across clients (WebSocket and SSE), and connection resume:
 * presence kept with no flicker, in-flight appends re-sent exactly once.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ErrorCodes, membersStore, type Message, type PresenceEvent, TetherError } from '../src/index.js';
import {
  assertNoDuplicates,
  controllable,
  dropSockets,
  history,
  makeClient,
  type Server,
  sleep,
  startServer,
  waitFor,
} from './server.js';

let server: Server;
before(async () => {
  server = await startServer();
});
after(async () => {
  await server?.stop();
});

const ids = (ms: readonly { connection_id: string }[]) => ms.map((m) => m.connection_id).sort();

test('presence members across clients: enter, update, leave, leave on close; SSE watches too', async () => {
  const channel = 'chat:presence';
  const observer = makeClient(server.url);
  const a = makeClient(server.url);
  const b = makeClient(server.url);
  const sse = makeClient(server.url, { transport: 'sse' });
  try {
    const och = observer.channel(channel, { presence: true });
    const events: PresenceEvent[] = [];
    och.presence.subscribe((e) => events.push(e));
    await och.attach();
    await waitFor(() => och.presence.synced, 5000, 'observer synced');
    assert.deepEqual(och.presence.members(), []);

    await a.channel(channel).presence.enter({ role: 'user', status: 'idle' });
    await b.channel(channel).presence.enter({ role: 'agent', status: 'idle' });
    await waitFor(() => och.presence.members().length === 2, 5000, 'two members');
    const aId = a.connectionId as string;
    const bId = b.connectionId as string;
    assert.ok(aId && bId && aId !== bId);
    assert.deepEqual(ids(och.presence.members()), [aId, bId].sort());
    assert.deepEqual(och.presence.members().find((m) => m.connection_id === bId)?.data, { role: 'agent', status: 'idle' });

    // A member that attaches later gets the set from the sync (here through
    // the store a UI framework would use).
    const bch = b.channel(channel);
    const store = membersStore(bch);
    let storeChanges = 0;
    const offStore = store.subscribe(() => storeChanges++);
    const seenByB: (readonly unknown[])[] = [];
    bch.presence.onMembers((ms) => seenByB.push(ms));
    await waitFor(() => bch.presence.synced && bch.presence.members().length === 2, 5000, 'B synced');
    assert.equal(bch.presence.members().length, 2);
    assert.equal(store.getSnapshot(), bch.presence.members(), 'a stable snapshot');
    assert.ok(storeChanges >= 1);
    offStore();

    // SSE watches presence with ?presence=true, and cannot enter.
    const sch = sse.channel(channel, { presence: true });
    await sch.attach();
    await waitFor(() => sch.presence.members().length === 2, 10000, 'SSE sees two members');
    await assert.rejects(sch.presence.enter({}), (e: TetherError) => e.code === ErrorCodes.Unsupported);

    await b.channel(channel).presence.update({ role: 'agent', status: 'thinking' });
    await waitFor(
      () => (och.presence.members().find((m) => m.connection_id === bId)?.data as { status?: string })?.status === 'thinking',
      5000,
      'update seen',
    );
    await waitFor(
      () => (sch.presence.members().find((m) => m.connection_id === bId)?.data as { status?: string })?.status === 'thinking',
      5000,
      'update seen over SSE',
    );

    // REST agrees.
    const rest = await och.presence.fetch();
    assert.deepEqual(ids(rest), [aId, bId].sort());

    // An explicit leave, then a clean close: both leave at once (no grace period).
    await a.channel(channel).presence.leave();
    await waitFor(() => och.presence.members().length === 1, 5000, 'A left');
    const t0 = Date.now();
    b.close();
    await waitFor(() => och.presence.members().length === 0, 5000, 'B left on close');
    assert.ok(Date.now() - t0 < 5000, 'a clean close leaves without the grace period');
    await waitFor(() => sch.presence.members().length === 0, 5000, 'SSE sees the leaves');

    const live = events.filter((e) => !e.fromSync).map((e) => `${e.action}:${e.member.connection_id === aId ? 'a' : 'b'}`);
    assert.deepEqual(live, ['enter:a', 'enter:b', 'update:b', 'leave:a', 'leave:b']);
  } finally {
    observer.close();
    a.close();
    b.close();
    sse.close();
  }
});

test('connection resume keeps presence (no leave seen) and re-sends in-flight appends exactly once', async () => {
  const channel = 'chat:resume';
  const observer = makeClient(server.url);
  const ctl = controllable();
  const agent = makeClient(server.url, { WebSocket: ctl.WebSocket });
  try {
    const och = observer.channel(channel, { presence: true });
    const presenceEvents: PresenceEvent[] = [];
    och.presence.subscribe((e) => presenceEvents.push(e));
    const observed: Message[] = [];
    och.subscribe((e) => observed.push(e));
    await och.attach();
    await waitFor(() => och.presence.synced, 5000, 'observer synced');

    const ach = agent.channel(channel);
    const continuities: string[] = [];
    ach.on('attached', (r) => continuities.push(r.continuity));
    await ach.attach();
    await ach.presence.enter({ role: 'agent', status: 'streaming' });
    const agentId = agent.connectionId as string;
    await waitFor(() => och.presence.members().length === 1, 5000, 'agent present');
    let resumes = 0;
    agent.on('resumed', () => resumes++);
    const failures: TetherError[] = [];
    agent.on('resume-failed', (e) => failures.push(e));

    const { serial } = await ach.publish({ name: 'response', data: '', extras: { role: 'assistant', stream: 'streaming' } });

    // 1. Cut the socket right after writing 100 appends, before any ack.
    const first = Array.from({ length: 100 }, (_, i) => ach.append(serial, `a${i};`));
    const cut = ctl.last;
    cut.terminate();
    const firstAcks = await Promise.all(first);
    assert.equal(firstAcks.length, 100, 'every in-flight append resolved (none OutcomeUnknown)');
    assert.equal(resumes, 1, 'the connection was resumed');
    assert.equal(agent.connectionId, agentId, 'same connection id after the resume');

    // 2. Freeze inbound frames so no ack arrives, let the server apply all
    //    100, then cut: every one of them is re-sent and must not apply twice.
    const frozen = ctl.last;
    assert.notEqual(frozen, cut);
    ctl.frozen.add(frozen);
    const before = observed.length;
    const second = Array.from({ length: 100 }, (_, i) => ach.append(serial, `b${i};`));
    await waitFor(() => observed.length >= before + 100, 10000, 'the server applied the second batch');
    frozen.terminate();
    const secondAcks = await Promise.all(second);
    assert.equal(new Set(secondAcks.map((a) => a.versionSerial)).size, 100, 'each re-sent append answered with its own original version');
    assert.equal(resumes, 2);
    assert.deepEqual(failures, []);

    await ach.update(serial, { extras: { stream: 'complete' } });
    const expected = await history(observer, channel);
    assert.equal(expected.length, 1);
    const data = expected[0]?.data as string;
    const want = [...Array.from({ length: 100 }, (_, i) => `a${i};`), ...Array.from({ length: 100 }, (_, i) => `b${i};`)].join('');
    assert.equal(data, want, 'each fragment exactly once, in order');
    await waitFor(() => och.messages()[0]?.version.serial === expected[0]?.version.serial, 5000, 'observer caught up');
    assert.deepEqual(och.messages(), expected);
    assertNoDuplicates(observed);
    await waitFor(() => ach.messages()[0]?.version.serial === expected[0]?.version.serial, 5000, 'agent view caught up');
    assert.deepEqual(ach.messages(), expected, "the agent's own view (re-attached by the server) equals history");
    assert.ok(continuities.slice(1).every((c) => c === 'resumed'), continuities.join(','));

    // Presence: the observer never saw the agent leave or re-enter.
    const aboutAgent = presenceEvents.filter((e) => e.member.connection_id === agentId).map((e) => e.action);
    assert.deepEqual(aboutAgent, ['enter']);
    assert.deepEqual(ids(och.presence.members()), [agentId]);
  } finally {
    observer.close();
    agent.close();
  }
});

test('a restored session that the server refuses (41001): re-attach by position, publish once', async () => {
  const channel = 'chat:resume-refused';
  const { MemoryStorage } = await import('./server.js');
  const storage = new MemoryStorage();
  const publisher = makeClient(server.url);
  const a = makeClient(server.url, { persist: storage });
  let b: ReturnType<typeof makeClient> | undefined;
  try {
    const pub = publisher.channel(channel);
    await pub.publish({ data: 'one' });
    const cha = a.channel(channel);
    await cha.attach();
    await waitFor(() => cha.messages().length === 1, 5000, 'A has one');
    a.close();
    await pub.publish({ data: 'two' });
    // A session record for a connection the server never had.
    storage.setItem(
      `tether:${server.url}:#connection`,
      JSON.stringify({ v: 1, connectionId: 'c_00000000000000000000000000000000', resumeKey: 'nope', ttlMs: 120000, seq: 5000, aliveAt: Date.now() }),
    );
    b = makeClient(server.url, { persist: storage });
    const failed: TetherError[] = [];
    b.on('resume-failed', (e) => failed.push(e));
    const chb = b.channel(channel);
    const events: Message[] = [];
    chb.subscribe((e) => events.push(e));
    const r = await chb.attach();
    assert.equal(r.continuity, 'resumed', 'attached by position after the refused connection resume');
    assert.equal(failed[0]?.code, ErrorCodes.ResumeFailed);
    await waitFor(() => chb.messages().length === 2, 5000, 'B caught up');
    assert.equal(events.length, 1, 'only what A had not');
    await chb.publish({ data: 'three' });
    assert.equal((await history(publisher, channel)).length, 3);
  } finally {
    publisher.close();
    a.close();
    b?.close();
  }
});

test('a page reload resumes the connection from storage: presence kept, seq continues', async () => {
  const channel = 'chat:reload-resume';
  const { MemoryStorage } = await import('./server.js');
  const storage = new MemoryStorage();
  const observer = makeClient(server.url);
  const ctl = controllable();
  const a = makeClient(server.url, { persist: storage, WebSocket: ctl.WebSocket });
  let b: ReturnType<typeof makeClient> | undefined;
  try {
    const och = observer.channel(channel, { presence: true });
    const presenceEvents: PresenceEvent[] = [];
    och.presence.subscribe((e) => presenceEvents.push(e));
    await och.attach();
    const cha = a.channel(channel);
    await cha.attach();
    await cha.presence.enter({ role: 'user' });
    const { serial } = await cha.publish({ data: '' });
    for (let i = 0; i < 10; i++) await cha.append(serial, `x${i}`);
    const aId = a.connectionId as string;
    await waitFor(() => och.presence.members().length === 1, 5000, 'A present');
    // The "page" dies without a clean close (a crash, a killed tab): its
    // socket is cut and it never connects again.
    (a as unknown as { persistence?: { flush(): void } }).persistence?.flush();
    ctl.refuse = true;
    dropSockets(ctl.sockets);
    await sleep(100);

    b = makeClient(server.url, { persist: storage });
    let resumed = 0;
    b.on('resumed', () => resumed++);
    const chb = b.channel(channel);
    await chb.attach();
    await waitFor(() => resumed === 1, 5000, 'B resumed A\'s connection');
    assert.equal(b.connectionId, aId);
    // New mutations must not collide with the sequence numbers A used.
    await chb.append(serial, '!');
    const msgs = await history(observer, channel);
    assert.equal(msgs[0]?.data, 'x0x1x2x3x4x5x6x7x8x9!');
    await sleep(300);
    assert.deepEqual(
      presenceEvents.filter((e) => !e.fromSync && e.member.connection_id === aId).map((e) => e.action),
      ['enter'],
      'no leave/enter flicker across the reload',
    );
    await chb.presence.leave();
    await waitFor(() => och.presence.members().length === 0, 5000, 'B can leave as A');
  } finally {
    observer.close();
    a.close();
    b?.close();
  }
});

test('after the grace period and TTL, the SDK re-enters presence with its last data; in-flight appends are OutcomeUnknown', async () => {
  const short = await startServer({ config: 'presence_grace_ms = 300\nresume_ttl_ms = 800\n' });
  const channel = 'chat:reenter';
  const observer = makeClient(short.url);
  const ctl = controllable();
  const agent = makeClient(short.url, { WebSocket: ctl.WebSocket });
  try {
    const och = observer.channel(channel, { presence: true });
    const presenceEvents: PresenceEvent[] = [];
    och.presence.subscribe((e) => presenceEvents.push(e));
    await och.attach();
    const ach = agent.channel(channel);
    await ach.attach();
    await ach.presence.enter({ role: 'agent', status: 'idle' });
    await ach.presence.update({ role: 'agent', status: 'thinking' });
    const { serial } = await ach.publish({ data: '' });
    await waitFor(() => och.presence.members().length === 1, 5000, 'agent present');
    const firstId = agent.connectionId as string;

    const frozen = ctl.last;
    ctl.frozen.add(frozen);
    const pending = [ach.append(serial, 'p'), ach.publish({ id: 'in-flight-publish', data: 'once' })];
    await sleep(200);
    ctl.refuse = true;
    frozen.terminate();
    await waitFor(() => och.presence.members().length === 0, 5000, 'left after the grace period');
    await sleep(1000); // past the resume TTL
    ctl.refuse = false;
    const [append, publish] = (await Promise.allSettled(pending)) as [PromiseSettledResult<unknown>, PromiseSettledResult<unknown>];
    assert.equal(append.status, 'rejected');
    assert.equal((append as PromiseRejectedResult).reason.code, ErrorCodes.OutcomeUnknown);
    assert.equal(publish.status, 'fulfilled', 'an in-flight publish is re-sent (deduplicated by id)');
    await waitFor(() => och.presence.members().length === 1, 5000, 're-entered');
    const member = och.presence.members()[0];
    assert.notEqual(member?.connection_id, firstId, 'a new connection');
    assert.deepEqual(member?.data, { role: 'agent', status: 'thinking' }, 'with the last data');
    const all = await history(observer, channel);
    assert.equal(all.filter((m) => m.id === 'in-flight-publish').length, 1);
    assert.equal(all[0]?.data, 'p', 'the append was applied once (its ack was lost)');
  } finally {
    observer.close();
    agent.close();
    await short.stop();
  }
});
