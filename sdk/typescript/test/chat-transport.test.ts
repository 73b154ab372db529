/**
 * TetherChatTransport driven by the real `ai` package's AbstractChat (the
 * machinery under `useChat`), against the real server whose LLM bridge calls
 * the built-in fake LLM (`tether fake-llm`), and against an agent written
 * with this SDK. Every outcome is checked against what the server stored
 * (REST), not only against what the chat shows.
 */

import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, test } from 'node:test';

import { AbstractChat, type ChatInit, type ChatState, type ChatStatus, type UIMessage } from 'ai';

import { type Message, streamStatus, TetherChatTransport, type TetherChatTransportOptions, type TetherClient, type UIChunk } from '../src/index.js';
import { bridgeConfig, dropSockets, type FakeLlm, makeClient, type Server, startFakeLlm, startServer, trackingWebSocket, waitFor, WS } from './server.js';

/** The ChatState that useChat's React binding provides, as plain arrays. */
class ArrayState implements ChatState<UIMessage> {
  status: ChatStatus = 'ready';
  error: Error | undefined = undefined;
  messages: UIMessage[];
  constructor(messages: UIMessage[] = []) {
    this.messages = messages;
  }
  pushMessage = (m: UIMessage) => {
    this.messages = [...this.messages, m];
  };
  popMessage = () => {
    this.messages = this.messages.slice(0, -1);
  };
  replaceMessage = (i: number, m: UIMessage) => {
    this.messages = this.messages.map((x, j) => (j === i ? m : x));
  };
  snapshot = <T>(x: T): T => structuredClone(x);
}

/** What `useChat` is, minus React. */
class TestChat extends AbstractChat<UIMessage> {
  constructor(init: ChatInit<UIMessage> & { messages?: UIMessage[] }) {
    super({ ...init, state: new ArrayState(init.messages) });
  }
}

const textOf = (m: UIMessage | undefined): string =>
  (m?.parts ?? []).map((p) => (p.type === 'text' ? p.text : '')).join('');

let llm: FakeLlm;
let server: Server;
const transports: TetherChatTransport[] = [];
const clients: TetherClient[] = [];

before(async () => {
  llm = await startFakeLlm();
  server = await startServer({ config: bridgeConfig(llm) });
});
after(async () => {
  for (const t of transports) t.close();
  for (const c of clients) c.close();
  await server?.stop();
  await llm?.stop();
});

/** A transport as a page makes it: its own client (ws on Node 20, no persistence across "pages"). */
function transport(extra: Partial<TetherChatTransportOptions> = {}, url = server.url): TetherChatTransport {
  const t = new TetherChatTransport({ url, WebSocket: WS, persist: false, ...extra } as TetherChatTransportOptions);
  transports.push(t);
  return t;
}

/** A transport whose streams are recorded, chunk by chunk, as the chat reads them. */
function recorded(t: TetherChatTransport): { transport: TetherChatTransport; chunks: UIChunk[] } {
  const chunks: UIChunk[] = [];
  const tap = (s: ReadableStream<UIChunk>) =>
    s.pipeThrough(
      new TransformStream<UIChunk, UIChunk>({
        transform(chunk, controller) {
          chunks.push(chunk);
          controller.enqueue(chunk);
        },
      }),
    );
  const send = t.sendMessages.bind(t);
  const reconnect = t.reconnectToStream.bind(t);
  t.sendMessages = async (o) => tap(await send(o));
  t.reconnectToStream = async (o) => {
    const s = await reconnect(o);
    return s && tap(s);
  };
  return { transport: t, chunks };
}

async function rest<T>(path: string, init?: RequestInit): Promise<T> {
  const res = await fetch(`${server.url}${path}`, init);
  assert.ok(res.ok, `${path}: HTTP ${res.status} ${await res.clone().text()}`);
  return (await res.json()) as T;
}

/** The channel's stored messages, oldest first. */
async function stored(channel: string): Promise<Message[]> {
  return (await rest<{ messages: Message[] }>(`/channels/${channel}/messages?direction=forwards&limit=1000`)).messages;
}

/** The stored response (the message with a stream status), polled until `done`. */
async function response(channel: string, done: (m: Message) => boolean = () => true): Promise<Message> {
  let last: Message | undefined;
  const deadline = Date.now() + 15000;
  for (;;) {
    last = (await stored(channel)).filter((m) => streamStatus(m) !== undefined).pop();
    if (last && done(last)) return last;
    assert.ok(Date.now() < deadline, `timed out; last response: ${JSON.stringify(last?.extras)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const ended = (m: Message) => streamStatus(m) !== 'streaming';

describe('bridge mode', () => {
  test('a sent message is stored as a prompt and the full answer arrives as the assistant message', async () => {
    const chatId = randomUUID();
    const { transport: t, chunks } = recorded(transport());
    const chat = new TestChat({ id: chatId, transport: t });
    await chat.sendMessage({ text: 'Hello there [[tokens:30]] [[tps:300]]' });

    assert.equal(chat.status, 'ready');
    assert.equal(chat.error, undefined);
    const [user, assistant, ...rest] = chat.messages;
    assert.equal(rest.length, 0);
    assert.equal(user?.role, 'user');
    assert.equal(assistant?.role, 'assistant');

    const all = await stored(`chat:${chatId}`);
    const prompt = all.find((m) => m.name === 'prompt');
    assert.ok(prompt, 'the user message is stored on the channel');
    assert.equal(prompt.data, 'Hello there [[tokens:30]] [[tps:300]]');
    assert.equal(prompt.id, user?.id, 'the UI message id is the Tether id (a retry is deduplicated)');
    assert.deepEqual(prompt.extras, { role: 'user' });
    const answer = await response(`chat:${chatId}`);
    assert.equal(answer.extras?.['stream'], 'complete');
    assert.equal(answer.extras?.['prompt'], prompt.serial, 'the response names the prompt it answers');
    assert.match(String(answer.data), /^You said: Hello there.* t30$/);
    assert.equal(textOf(assistant), answer.data, 'the chat shows exactly the stored text');
    assert.equal(assistant?.id, answer.id);
    assert.deepEqual(
      [chunks[0]?.type, chunks[1]?.type, ...chunks.slice(-2).map((c) => c.type)],
      ['start', 'text-start', 'text-end', 'finish'],
    );
  });

  test('the second turn sends the whole conversation to the model', async () => {
    const chatId = randomUUID();
    const chat = new TestChat({ id: chatId, transport: transport({ bridge: { system: 'Be brief.' } }) });
    await chat.sendMessage({ text: 'first [[tokens:2]] [[tps:0]]' });
    await chat.sendMessage({ text: 'second [[tokens:2]] [[tps:0]]' });
    assert.equal(chat.messages.length, 4);
    const responses = (await stored(`chat:${chatId}`)).filter((m) => streamStatus(m) !== undefined);
    assert.equal(responses.length, 2);
    // The fake answers the last user message; the bridge got the rest as context.
    assert.match(String(responses[1]?.data), /^You said: second/);
    assert.equal(textOf(chat.messages[3]), responses[1]?.data);
    assert.equal(textOf(chat.messages[1]), responses[0]?.data);
  });

  test('regenerate() asks the bridge again without publishing the prompt twice', async () => {
    const chatId = randomUUID();
    const chat = new TestChat({ id: chatId, transport: transport() });
    await chat.sendMessage({ text: 'again [[tokens:3]] [[tps:0]]' });
    const firstAnswer = chat.messages[1]?.id;
    await chat.regenerate();
    assert.equal(chat.status, 'ready');
    assert.equal(chat.messages.length, 2, 'the old answer is replaced');
    const all = await stored(`chat:${chatId}`);
    assert.equal(all.filter((m) => m.name === 'prompt').length, 1);
    const responses = all.filter((m) => streamStatus(m) === 'complete');
    assert.equal(responses.length, 2);
    assert.equal(chat.messages[1]?.id, responses[1]?.id);
    assert.notEqual(chat.messages[1]?.id, firstAnswer);
    assert.equal(responses[1]?.extras?.['prompt'], undefined, 'no new prompt to name');
  });

  test('a page reload mid-stream resumes with the full text exactly once, on every tab', async () => {
    const chatId = randomUUID();
    const channel = `chat:${chatId}`;
    const first = transport();
    const page1 = new TestChat({ id: chatId, transport: first });
    void page1.sendMessage({ text: 'Resume me [[tokens:400]] [[tps:300]]' });
    const partial = await response(channel, (m) => String(m.data).length > 100);
    assert.equal(streamStatus(partial), 'streaming');
    first.close(); // the page goes away mid-answer

    // The reloaded page (and a second tab) load the history's prompt, then resume.
    const prompt = (await stored(channel)).find((m) => m.name === 'prompt') as Message;
    const loaded: UIMessage[] = [{ id: prompt.id, role: 'user', parts: [{ type: 'text', text: String(prompt.data) }] }];
    const tabs = [recorded(transport()), recorded(transport())];
    const chats = tabs.map((tab) => new TestChat({ id: chatId, transport: tab.transport, messages: structuredClone(loaded) }));
    await Promise.all(chats.map((c) => c.resumeStream()));

    const answer = await response(channel);
    assert.equal(answer.extras?.['stream'], 'complete');
    assert.ok(String(answer.data).endsWith(' t400'));
    for (const [i, chat] of chats.entries()) {
      assert.equal(chat.status, 'ready');
      assert.equal(chat.messages.length, 2, 'the prompt and one answer, not two');
      assert.equal(textOf(chat.messages[1]), answer.data, 'the full text, once');
      const deltas = tabs[i]!.chunks.filter((c) => c.type === 'text-delta');
      const firstDelta = deltas[0]?.type === 'text-delta' ? deltas[0].delta : '';
      assert.ok(firstDelta.length >= String(partial.data).length, 'the resume starts with the text so far');
      assert.ok(deltas.length > 1, 'and then follows it live');
    }
  });

  test('a dropped connection mid-answer is resumed by the client: the chat never notices', async () => {
    const chatId = randomUUID();
    const sockets: WS[] = [];
    const chat = new TestChat({ id: chatId, transport: transport({ WebSocket: trackingWebSocket(sockets), reconnect: { initialDelayMs: 20, maxDelayMs: 100 } }) });
    const sending = chat.sendMessage({ text: 'Drop me [[tokens:300]] [[tps:300]]' });
    await waitFor(() => textOf(chat.messages[1]).length > 50, 15000, 'text before the drop');
    assert.ok(dropSockets(sockets) > 0);
    await sending;
    const answer = await response(`chat:${chatId}`);
    assert.equal(answer.extras?.['stream'], 'complete');
    assert.equal(chat.status, 'ready');
    assert.equal(textOf(chat.messages[1]), answer.data, 'every token once, none lost');
    assert.ok(sockets.length > 1, 'it reconnected');
  });

  test('over the SSE fallback the answer arrives and stop() cancels it the same way', async () => {
    const chatId = randomUUID();
    const sse = { transport: 'sse' as const, WebSocket: undefined };
    const t = transport(sse);
    assert.equal(t.client.transport, 'sse');
    const chat = new TestChat({ id: chatId, transport: t });
    await chat.sendMessage({ text: 'Over SSE [[tokens:20]] [[tps:200]]' });
    assert.equal(chat.status, 'ready');
    const answer = await response(`chat:${chatId}`);
    assert.equal(textOf(chat.messages[1]), answer.data);
    assert.ok(String(answer.data).endsWith(' t20'));

    const sending = chat.sendMessage({ text: 'Stop me [[tokens:3000]] [[tps:200]]' });
    await waitFor(() => chat.status === 'streaming' && textOf(chat.messages[3]).length > 0, 15000, 'streaming');
    await chat.stop();
    await sending;
    const stopped = await response(`chat:${chatId}`, ended);
    assert.notEqual(stopped.serial, answer.serial);
    assert.equal(stopped.extras?.['stream'], 'cancelled');
  });

  test('nothing streaming: reconnectToStream resolves to null and the chat stays ready', async () => {
    const chatId = randomUUID();
    const t = transport();
    assert.equal(await t.reconnectToStream({ chatId }), null);
    const chat = new TestChat({ id: chatId, transport: t });
    await chat.sendMessage({ text: 'done [[tokens:2]] [[tps:0]]' });
    assert.equal(await t.reconnectToStream({ chatId }), null, 'a finished answer is not resumed');
    const reloaded = new TestChat({ id: chatId, transport: transport() });
    await reloaded.resumeStream();
    assert.equal(reloaded.status, 'ready');
    assert.equal(reloaded.messages.length, 0);
  });

  test('stop() cancels the response on the server and leaves the chat ready', async () => {
    const chatId = randomUUID();
    const channel = `chat:${chatId}`;
    const chat = new TestChat({ id: chatId, transport: transport() });
    const sending = chat.sendMessage({ text: 'Stop me [[tokens:3000]] [[tps:200]]' });
    await waitFor(() => chat.status === 'streaming' && textOf(chat.messages[1]).length > 0, 15000, 'streaming');
    await chat.stop();
    await sending;
    assert.equal(chat.status, 'ready');
    assert.equal(chat.error, undefined);

    const answer = await response(channel, ended);
    assert.equal(answer.extras?.['stream'], 'cancelled');
    assert.ok(!String(answer.data).endsWith(' t3000'), 'the answer was cut short');
    const cancel = (await stored(channel)).find((m) => m.name === 'cancel');
    assert.equal(cancel?.extras?.['target'], answer.serial, 'the cancel convention message targets the response');
    assert.ok(String(answer.data).startsWith(textOf(chat.messages[1])), 'the chat keeps what it had');
  });

  test('stop() after a reload cancels the resumed response; a superseded resume does not', async () => {
    const chatId = randomUUID();
    const channel = `chat:${chatId}`;
    // The tab that asked stays open; the same chat is reloaded in another tab.
    const asker = new TestChat({ id: chatId, transport: transport() });
    const asking = asker.sendMessage({ text: 'Long [[tokens:3000]] [[tps:200]]' });
    await response(channel, (m) => String(m.data).length > 20);

    const chat = new TestChat({ id: chatId, transport: transport() });
    // Twice, as React's strict mode does: the first resume is aborted by the second.
    const resumes = [chat.resumeStream(), chat.resumeStream()];
    await waitFor(() => chat.status === 'streaming', 15000, 'resumed');
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(streamStatus(await response(channel)), 'streaming', 'replacing a resume is not a stop');

    await chat.stop();
    await Promise.all(resumes);
    assert.equal(chat.status, 'ready');
    const answer = await response(channel, ended);
    assert.equal(answer.extras?.['stream'], 'cancelled');
    // The asking tab sees the stop too: its answer ends (an abort, not an error) with the stored text.
    await asking;
    assert.equal(asker.status, 'ready');
    assert.equal(textOf(asker.messages[1]), answer.data);
    // The tab that stopped keeps what it had shown (the chat ignores chunks after a stop).
    assert.ok(String(answer.data).startsWith(textOf(chat.messages[0])));
  });

  /** A fetch that holds the responses of requests whose path ends with `suffix` until `release()`. */
  function holding(suffix: string): { fetch: typeof fetch; held: Promise<void>; release(): void } {
    let release = () => {};
    let reached = () => {};
    const gate = new Promise<void>((r) => (release = r));
    const held = new Promise<void>((r) => (reached = r));
    const f: typeof fetch = async (input, init) => {
      const res = await fetch(input, init);
      if (new URL(String(input)).pathname.endsWith(suffix) && init?.method === 'POST') {
        reached();
        await gate;
      }
      return res;
    };
    return { fetch: f, held, release };
  }

  test('stop() while the bridge is starting cancels the answer once it exists', async () => {
    const chatId = randomUUID();
    const gate = holding('/llm');
    const chat = new TestChat({ id: chatId, transport: transport({ fetch: gate.fetch }) });
    const sending = chat.sendMessage({ text: 'Too late [[tokens:3000]] [[tps:200]]' });
    await gate.held; // the job runs on the server; its serial has not reached the page
    const stopping = chat.stop();
    gate.release();
    await Promise.all([stopping, sending]);
    assert.equal(chat.status, 'ready');
    const answer = await response(`chat:${chatId}`, ended);
    assert.equal(answer.extras?.['stream'], 'cancelled');
  });

  test('stop() while the prompt is being published starts no answer', async () => {
    const chatId = randomUUID();
    const gate = holding('/messages');
    const chat = new TestChat({ id: chatId, transport: transport({ fetch: gate.fetch }) });
    const sending = chat.sendMessage({ text: 'Never mind [[tokens:3]]' });
    await gate.held;
    const stopping = chat.stop();
    gate.release();
    await Promise.all([stopping, sending]);
    assert.equal(chat.status, 'ready');
    assert.equal(chat.error, undefined);
    await new Promise((r) => setTimeout(r, 200));
    const all = await stored(`chat:${chatId}`);
    assert.deepEqual(
      all.map((m) => m.name),
      ['prompt'],
      'the message was sent, but no bridge job was started',
    );
  });

  test('a failing model surfaces as the chat error', async () => {
    const chatId = randomUUID();
    const chat = new TestChat({ id: chatId, transport: transport() });
    await chat.sendMessage({ text: 'Break [[fail:500]]' });
    assert.equal(chat.status, 'error');
    assert.match(chat.error?.message ?? '', /HTTP 500/);
    const answer = await response(`chat:${chatId}`, ended);
    assert.equal(answer.extras?.['stream'], 'error');
  });

  test('a refused bridge request surfaces as the chat error', async () => {
    const chat = new TestChat({ id: randomUUID(), transport: transport({ bridge: { model: 'not-allowed' } }) });
    await chat.sendMessage({ text: 'hi' });
    assert.equal(chat.status, 'error');
    assert.match(chat.error?.message ?? '', /model/i);
    assert.equal((chat.error as { code?: number } | undefined)?.code, 40300);
  });
});

describe('agent mode', () => {
  /** An agent with this SDK: answers each prompt with `Echo: <prompt>` token by token, until cancelled. */
  function agent(tokens: number, delayMs: number): { listen(channel: string): Promise<unknown> } {
    const client = makeClient(server.url, { clientId: 'agent-1' });
    clients.push(client);
    const listen = (channel: string) => {
      const ch = client.channel(channel);
      ch.subscribe((event) => {
        if (event.name !== 'prompt' || event.action !== 'create') return;
        void (async () => {
            const { serial } = await ch.publish({
              name: 'response',
              data: '',
              extras: { role: 'assistant', stream: 'streaming', prompt: event.serial },
            });
            try {
              await ch.append(serial, `Echo: ${String(event.data)}`);
              for (let i = 1; i <= tokens; i++) {
                await new Promise((r) => setTimeout(r, delayMs));
                await ch.append(serial, ` a${i}`);
              }
              await ch.update(serial, { extras: { stream: 'complete' } });
            } catch {
              /* cancelled: the server refuses further appends (40901) */
            }
          })();
      });
      return ch.attach();
    };
    return { listen };
  }

  test('an agent subscribed to the channel answers; stop() ends it cancelled', async () => {
    const chatId = randomUUID();
    const channel = `chat:${chatId}`;
    await agent(5, 5).listen(channel);

    const chat = new TestChat({ id: chatId, transport: transport({ mode: 'agent' }) });
    await chat.sendMessage({ text: 'ping' });
    assert.equal(chat.status, 'ready');
    const answer = await response(channel);
    assert.equal(answer.extras?.['stream'], 'complete');
    assert.equal(answer.data, 'Echo: ping a1 a2 a3 a4 a5');
    assert.equal(textOf(chat.messages[1]), answer.data);

    const channel2 = `chat:${chatId}-slow`;
    await agent(10000, 10).listen(channel2);
    const chat2 = new TestChat({ id: `${chatId}-slow`, transport: transport({ mode: 'agent' }) });
    const sending = chat2.sendMessage({ text: 'long' });
    await waitFor(() => textOf(chat2.messages[1]).includes('a3'), 15000, 'agent streaming');
    await chat2.stop();
    await sending;
    assert.equal(chat2.status, 'ready');
    const cancelled = await response(channel2, ended);
    assert.equal(cancelled.extras?.['stream'], 'cancelled');
  });

  test('no agent answering surfaces as the chat error after agentTimeoutMs', async () => {
    const chat = new TestChat({ id: randomUUID(), transport: transport({ mode: 'agent', agentTimeoutMs: 300 }) });
    await chat.sendMessage({ text: 'anyone?' });
    assert.equal(chat.status, 'error');
    assert.match(chat.error?.message ?? '', /no agent answered/);
  });
});

describe('authentication', () => {
  const KEY = 'app:app-secret-0123456789';
  let secured: Server;
  before(async () => {
    secured = await startServer({ dev: false, args: ['--key', KEY], config: bridgeConfig(llm) });
  });
  after(async () => {
    await secured?.stop();
  });

  test('a token from authCallback sends and receives; a bad key is a chat error', async () => {
    const mint = async () => {
      const res = await fetch(`${secured.url}/keys/app/tokens`, {
        method: 'POST',
        headers: { authorization: `Basic ${Buffer.from(KEY).toString('base64')}`, 'content-type': 'application/json' },
        body: JSON.stringify({ client_id: 'user-1', ttl_secs: 600, capabilities: { 'chat:*': ['subscribe', 'publish', 'history'] } }),
      });
      assert.equal(res.status, 201, await res.clone().text());
      return ((await res.json()) as { token: string }).token;
    };
    const chat = new TestChat({ id: randomUUID(), transport: transport({ authCallback: mint }, secured.url) });
    await chat.sendMessage({ text: 'secure [[tokens:3]] [[tps:0]]' });
    assert.equal(chat.status, 'ready', String(chat.error));
    assert.match(textOf(chat.messages[1]), /^You said: secure.* t3$/);

    const bad = new TestChat({ id: randomUUID(), transport: transport({ key: 'app:wrong-secret-0123456789', reconnect: { maxDelayMs: 50 } }, secured.url) });
    await bad.sendMessage({ text: 'no' });
    assert.equal(bad.status, 'error');
    assert.equal((bad.error as { statusCode?: number } | undefined)?.statusCode, 401);
  });
});
