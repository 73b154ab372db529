/**
 * Authentication against a server WITHOUT --dev: short-lived tokens renewed
 * on the live connection (no reconnect, attachments kept), a token that
 * expires without renewal (close 4005: renew, reconnect, resume), key-based
 * credentials for back ends, and the operator capability for handoff.
 */

import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';

import { ErrorCodes, type Message, type PresenceEvent, TetherError } from '../src/index.js';
import { makeClient, type Server, sleep, startServer, trackingWebSocket, waitFor, type WS } from './server.js';

const KEY = 'app:app-secret-0123456789';
const USER_CAPS = { 'chat:*': ['subscribe', 'publish', 'history', 'presence', 'presence-subscribe', 'message-update-own'] };

let server: Server;
before(async () => {
  server = await startServer({ dev: false, args: ['--key', KEY] });
});
after(async () => {
  await server?.stop();
});

/** Mints a token the way an app's back end would. */
async function mint(clientId: string, ttlSecs: number): Promise<string> {
  const res = await fetch(`${server.url}/keys/app/tokens`, {
    method: 'POST',
    headers: { authorization: `Basic ${Buffer.from(KEY).toString('base64')}`, 'content-type': 'application/json' },
    body: JSON.stringify({ client_id: clientId, ttl_secs: ttlSecs, capabilities: USER_CAPS }),
  });
  assert.equal(res.status, 201, await res.clone().text());
  const body = (await res.json()) as { token: string };
  return body.token;
}

test('without a credential the server refuses; a key (back end) works', async () => {
  const res = await fetch(`${server.url}/channels/chat:x/messages`);
  assert.equal(res.status, 401);
  const agent = makeClient(server.url, { key: KEY, clientId: 'agent-1' });
  try {
    const ch = agent.channel('chat:key');
    await ch.attach();
    const ack = await ch.publish({ data: 'from the back end' });
    const msg = await ch.message(ack.serial);
    assert.equal(msg.client_id, 'agent-1', 'the key holder acts as its client_id (over WebSocket)');
    assert.equal(agent.clientId, 'agent-1');
    const viaRest = await agent.rest.publish('chat:key', { data: 'over REST' });
    assert.equal((await ch.message(viaRest.serial)).client_id, 'agent-1', 'and over REST (Basic auth)');
  } finally {
    agent.close();
  }
});

test('token renewal on a live connection keeps the socket and the attachments', async () => {
  const channel = 'chat:renew';
  let calls = 0;
  const sockets: WS[] = [];
  const user = makeClient(server.url, {
    WebSocket: trackingWebSocket(sockets),
    authCallback: async () => {
      calls++;
      return mint('u1', 3);
    },
  });
  const agent = makeClient(server.url, { key: KEY, clientId: 'agent-1' });
  try {
    const states: string[] = [];
    user.on('state', (s) => states.push(s));
    const uch = user.channel(channel);
    const events: Message[] = [];
    uch.subscribe((e) => events.push(e));
    await uch.attach();
    const ach = agent.channel(channel);
    // About seven seconds: more than two lifetimes of a 3 s token.
    for (let i = 0; i < 9; i++) {
      await ach.publish({ data: `m${i}` });
      await sleep(800);
    }
    await waitFor(() => uch.messages().length === 9, 5000, 'every message received');
    assert.equal(sockets.length, 1, 'never reconnected');
    assert.ok(!states.includes('disconnected'), `states: ${states.join(',')}`);
    assert.ok(calls >= 3, `authCallback called ${calls} times: initial + renewals`);
    assert.equal(uch.state, 'attached');
    // The renewed credential is in force for publishing (the first token expired long ago).
    const mine = await uch.publish({ data: 'from the user' });
    assert.equal((await uch.message(mine.serial)).client_id, 'u1');
    // Capabilities: a user is not an operator.
    await assert.rejects(uch.claim(), (e: TetherError) => e.code === ErrorCodes.Forbidden);
    const claim = await ach.claim();
    const release = await ach.release();
    assert.deepEqual((await ach.message(claim.serial)).extras, { action: 'claim' });
    assert.deepEqual((await ach.message(release.serial)).extras, { action: 'release' });
  } finally {
    user.close();
    agent.close();
  }
});

test('a token that expires without renewal (4005): the SDK renews, reconnects and resumes', async () => {
  const channel = 'chat:expire';
  let calls = 0;
  const sockets: WS[] = [];
  const user = makeClient(server.url, {
    WebSocket: trackingWebSocket(sockets),
    authCallback: async () => {
      calls++;
      // The renewal is slow: the token expires before it comes back.
      if (calls === 2) await sleep(4000);
      return mint('u2', 3);
    },
  });
  const observer = makeClient(server.url, { key: KEY, clientId: 'observer' });
  try {
    const errors: TetherError[] = [];
    user.on('error', (e) => errors.push(e));
    let resumed = 0;
    user.on('resumed', () => resumed++);
    const och = observer.channel(channel, { presence: true });
    const presenceEvents: PresenceEvent[] = [];
    och.presence.subscribe((e) => presenceEvents.push(e));
    await och.attach();

    const uch = user.channel(channel);
    const continuities: string[] = [];
    uch.on('attached', (a) => continuities.push(a.continuity));
    await uch.attach();
    await uch.presence.enter({ role: 'user' });
    const uid = user.connectionId as string;
    await waitFor(() => och.presence.members().length === 1, 5000, 'user present');

    await waitFor(() => errors.some((e) => e.code === ErrorCodes.TokenExpired), 8000, 'the server expired the token');
    await och.publish({ data: 'while the user was cut off' });
    await waitFor(() => resumed === 1, 10000, 'resumed after renewal');
    assert.equal(sockets.length, 2);
    assert.equal(user.connectionId, uid);
    await waitFor(() => uch.messages().length === 1, 5000, 'missed message delivered');
    assert.ok(continuities.slice(1).every((c) => c === 'resumed'), continuities.join(','));
    assert.deepEqual(
      presenceEvents.filter((e) => !e.fromSync && e.member.connection_id === uid).map((e) => e.action),
      ['enter'],
      'presence kept through the expiry',
    );
  } finally {
    user.close();
    observer.close();
  }
});
