/**
 * The pieces of TetherChatTransport that need no server: snapshots to UI
 * message chunks (checked against the real `ai` package's chunk schema and
 * reader), finding an agent's answer to a prompt, and the conversation sent
 * to the bridge.
 */

import assert from 'node:assert/strict';
import { test } from 'node:test';

import { type ChatTransport, parseJsonEventStream, readUIMessageStream, type UIMessage, type UIMessageChunk, uiMessageChunkSchema } from 'ai';

import { type Message, ResponseChunker, responseTo, TetherChatTransport, toModelMessages, type UIChunk } from '../src/index.js';

const S = '1764151200000-0000000000000007';

/** A snapshot of the response `S` at version `v`. */
function snap(v: number, data: string, extras: Record<string, unknown> = { stream: 'streaming' }, action: Message['action'] = 'update'): Message {
  const serial = `1764151200000-${String(v).padStart(16, '0')}`;
  return { serial: S, id: 'msg-1', data, extras, timestamp: 0, action, version: { serial, timestamp: 0 } };
}

/** Chunks through the ai package's SSE parser and schema, then its message reader. */
async function viaAi(chunks: UIChunk[]): Promise<{ types: string[]; last: UIMessage | undefined }> {
  const sse = chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join('') + 'data: [DONE]\n\n';
  const bytes = new ReadableStream<Uint8Array>({
    start(c) {
      c.enqueue(new TextEncoder().encode(sse));
      c.close();
    },
  });
  const parsed: UIMessageChunk[] = [];
  const reader = parseJsonEventStream({ stream: bytes, schema: uiMessageChunkSchema }).getReader();
  for (;;) {
    const { value: r, done } = await reader.read();
    if (done) break;
    assert.ok(r.success, `a chunk fails the ai schema: ${String(!r.success && r.error)}`);
    parsed.push(r.value as UIMessageChunk);
  }
  const stream = new ReadableStream<UIMessageChunk>({
    start(c) {
      for (const chunk of parsed) c.enqueue(chunk);
      c.close();
    },
  });
  let last: UIMessage | undefined;
  for await (const m of readUIMessageStream({ stream, onError: () => undefined })) last = m;
  return { types: parsed.map((c) => c.type), last };
}

const text = (m: UIMessage | undefined) => (m?.parts ?? []).map((p) => (p.type === 'text' ? p.text : '')).join('');

test('snapshots become start, deltas of only the new text, and finish; stale ones add nothing', async () => {
  const c = new ResponseChunker(S);
  const chunks = [
    ...c.next(snap(2, 'Hel')),
    ...c.next(snap(1, 'H')), // older: a REST read that lost the race with the view
    ...c.next(snap(2, 'Hel')), // the same version again
    ...c.next(snap(4, 'Hello')),
    ...c.next(snap(5, 'Hello!', { stream: 'complete' })),
    ...c.next(snap(6, 'Hello!!', { stream: 'complete' })), // after the end
  ];
  assert.ok(c.ended);
  assert.deepEqual(chunks, [
    { type: 'start', messageId: 'msg-1' },
    { type: 'text-start', id: `text-${S}` },
    { type: 'text-delta', id: `text-${S}`, delta: 'Hel' },
    { type: 'text-delta', id: `text-${S}`, delta: 'lo' },
    { type: 'text-delta', id: `text-${S}`, delta: '!' },
    { type: 'text-end', id: `text-${S}` },
    { type: 'finish', finishReason: 'stop' },
  ]);
  const { types, last } = await viaAi(chunks);
  assert.equal(types.length, chunks.length);
  assert.equal(text(last), 'Hello!');
  assert.equal(last?.id, 'msg-1');
});

test('cancelled and deleted end with abort; error and a rewrite end with an error chunk', async () => {
  const ends = (extras: Record<string, unknown>, data = 'ab', action: Message['action'] = 'update') => {
    const c = new ResponseChunker(S);
    c.next(snap(1, 'a'));
    return c.next(snap(2, data, extras, action)).slice(-1)[0];
  };
  assert.deepEqual(ends({ stream: 'cancelled' }), { type: 'abort', reason: 'cancelled' });
  assert.deepEqual(ends({}, '', 'delete'), { type: 'abort', reason: 'deleted' });
  assert.deepEqual(ends({ stream: 'error', error: { message: 'the model server answered HTTP 500' } }), {
    type: 'error',
    errorText: 'the model server answered HTTP 500',
  });
  assert.deepEqual(ends({ stream: 'error' }), { type: 'error', errorText: 'the response failed' });
  assert.deepEqual(ends({ stream: 'streaming' }, 'xyz'), { type: 'error', errorText: 'the response was rewritten' });
  assert.deepEqual(ends({}), { type: 'finish', finishReason: 'stop' }, 'no status counts as complete');
  const failed = new ResponseChunker(S);
  const { types } = await viaAi([...failed.next(snap(1, 'a')), ...failed.next(snap(2, 'a', { stream: 'error' }))]);
  assert.deepEqual(types.slice(-2), ['text-end', 'error']);
});

test('responseTo finds the first streamed answer after the prompt that names it or no prompt', () => {
  const m = (seq: number, extras?: Record<string, unknown>, action: Message['action'] = 'create'): Message => {
    const serial = `1764151200000-${String(seq).padStart(16, '0')}`;
    const msg: Message = { serial, id: String(seq), data: '', timestamp: 0, action, version: { serial, timestamp: 0 } };
    if (extras) msg.extras = extras;
    return msg;
  };
  const prompt = m(5).serial;
  const old = m(3, { stream: 'complete' });
  const other = m(6, { stream: 'streaming', prompt: m(4).serial });
  const deleted = m(7, { stream: 'streaming' }, 'delete');
  const chatter = m(8, { role: 'user' });
  const mine = m(9, { stream: 'streaming', prompt });
  const unlinked = m(10, { stream: 'streaming' });
  assert.equal(responseTo([old, m(5), other, deleted, chatter, mine, unlinked], prompt)?.serial, mine.serial);
  assert.equal(responseTo([old, m(5), other, unlinked], prompt)?.serial, unlinked.serial);
  assert.equal(responseTo([old, m(5), other], prompt), undefined);
});

test('the conversation for the bridge: text parts, roles, system first, empty turns dropped', () => {
  const ui: UIMessage[] = [
    { id: '1', role: 'user', parts: [{ type: 'text', text: 'Hi ' }, { type: 'text', text: 'there' }] },
    { id: '2', role: 'assistant', parts: [{ type: 'step-start' }] },
    { id: '3', role: 'assistant', parts: [{ type: 'text', text: 'Hello.' }] },
  ];
  assert.deepEqual(toModelMessages(ui, 'Be brief.'), [
    { role: 'system', content: 'Be brief.' },
    { role: 'user', content: 'Hi there' },
    { role: 'assistant', content: 'Hello.' },
  ]);
  assert.deepEqual(toModelMessages(ui).length, 2);
});

test("the transport type-checks as the ai package's ChatTransport, for custom message types too", () => {
  // Compile-time half: these assignments fail `npm run build:test` if the
  // structural types of ai-types.ts drift from ai's own.
  const t = new TetherChatTransport({ url: 'http://127.0.0.1:1', autoConnect: false, persist: false });
  const plain: ChatTransport<UIMessage> = t;
  const custom: ChatTransport<UIMessage<{ createdAt: number }, { weather: { city: string } }>> = t;
  const chunk: UIMessageChunk = { type: 'finish', finishReason: 'stop' } satisfies UIChunk;
  assert.equal(plain.resumeStreamIsReplay, true, 'resumed streams are replays from the start');
  assert.equal(custom, plain);
  assert.equal(chunk.type, 'finish');
  assert.equal(t.channelName('42'), 'chat:42');
  assert.equal(new TetherChatTransport({ client: t.client, channel: (id) => `support/${id}` }).channelName('42'), 'support/42');
  t.close();
});
