// Tether's AI SDK resume endpoint, parsed by the real `ai` package: its
// DefaultChatTransport (the reconnect request of `useChat({ resume: true })`),
// readUIMessageStream, and AbstractChat (the machinery under useChat).
//
// Run by `cargo test -p tether-server --test aisdk`, which starts a server
// and the fake LLM and passes the server's URL in TETHER_URL.

import { test } from "node:test";
import assert from "node:assert/strict";
import { randomUUID } from "node:crypto";
import {
  AbstractChat,
  DefaultChatTransport,
  parseJsonEventStream,
  readUIMessageStream,
  uiMessageChunkSchema,
} from "ai";

const base = process.env.TETHER_URL;
if (!base) {
  throw new Error("TETHER_URL is not set: run through `cargo test -p tether-server --test aisdk`");
}

/** Where a chat's stream is resumed: the channel `chat:{id}`. */
const streamUrl = (chatId) => `${base}/channels/chat:${chatId}/aisdk/stream`;

/** The transport an app configures (see docs/ai-streaming.md). */
function transport(fetchImpl) {
  return new DefaultChatTransport({
    api: "/api/chat", // the app's own endpoint; not used when resuming
    prepareReconnectToStreamRequest: ({ id }) => ({ api: streamUrl(id) }),
    fetch: fetchImpl,
  });
}

/** Starts the LLM bridge on the chat's channel; returns the response serial. */
async function ask(chatId, prompt) {
  const res = await fetch(`${base}/channels/chat:${chatId}/llm`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ messages: [{ role: "user", content: prompt }] }),
  });
  assert.equal(res.status, 202, await res.clone().text());
  return (await res.json()).serial;
}

async function stored(chatId, serial) {
  const res = await fetch(`${base}/channels/chat:${chatId}/messages/${serial}`);
  assert.equal(res.status, 200);
  return res.json();
}

/** Polls the stored response until `done(message)`. */
async function until(chatId, serial, done) {
  const deadline = Date.now() + 15_000;
  for (;;) {
    const message = await stored(chatId, serial);
    if (done(message)) return message;
    assert.ok(Date.now() < deadline, `timed out; last: ${JSON.stringify(message.extras)}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

const finished = (chatId, serial) => until(chatId, serial, (m) => m.extras.stream !== "streaming");

const textOf = (message) =>
  message.parts.filter((p) => p.type === "text").map((p) => p.text).join("");

/** The minimal ChatState that useChat's React binding provides. */
class ArrayState {
  status = "ready";
  error = undefined;
  messages = [];
  pushMessage = (m) => this.messages.push(m);
  popMessage = () => this.messages.pop();
  replaceMessage = (i, m) => (this.messages[i] = m);
  snapshot = (x) => structuredClone(x);
}

class TestChat extends AbstractChat {
  constructor(options) {
    super({ ...options, state: new ArrayState() });
  }
}

/** A fetch whose first response body breaks after `chunks` reads, like a
 * network drop; later requests go through untouched. */
function droppingFetch(chunks) {
  let calls = 0;
  return async (url, init) => {
    const res = await fetch(url, init);
    if (calls++ > 0 || !res.body) return res;
    const reader = res.body.getReader();
    let read = 0;
    const body = new ReadableStream({
      async pull(controller) {
        if (read++ >= chunks) {
          await reader.cancel();
          controller.error(new TypeError("network error (simulated drop)"));
          return;
        }
        const { value, done } = await reader.read();
        if (done) controller.close();
        else controller.enqueue(value);
      },
    });
    return new Response(body, { status: res.status, headers: res.headers });
  };
}

test("nothing to resume: the reconnect request gets 204 and resolves to null", async () => {
  const chatId = randomUUID();
  assert.equal(await transport().reconnectToStream({ chatId }), null);
  // A finished response is not resumed either.
  const serial = await ask(chatId, "[[tokens:3]] [[tps:0]]");
  await finished(chatId, serial);
  assert.equal(await transport().reconnectToStream({ chatId }), null);
});

test("the ai package's parser reads a live response as the stored text", async () => {
  const chatId = randomUUID();
  const serial = await ask(chatId, "Hello [[tokens:600]] [[tps:600]]");

  // Two readers at once: the raw chunks against the ai schema, and the
  // transport + readUIMessageStream pipeline useChat uses.
  const raw = await fetch(streamUrl(chatId));
  const stream = await transport().reconnectToStream({ chatId });
  assert.equal(raw.status, 200);
  assert.equal(raw.headers.get("x-vercel-ai-ui-message-stream"), "v1");
  assert.match(raw.headers.get("content-type"), /^text\/event-stream/);
  assert.ok(stream, "a stream while the response is streaming");
  const readRaw = async () => {
    const types = [];
    for await (const chunk of parseJsonEventStream({ stream: raw.body, schema: uiMessageChunkSchema })) {
      assert.ok(chunk.success, `chunk fails the ai schema: ${chunk.error}`);
      types.push(chunk.value.type);
    }
    return types;
  };
  const readMessages = async () => {
    let last;
    for await (const message of readUIMessageStream({ stream })) last = message;
    return last;
  };
  const [types, last] = await Promise.all([readRaw(), readMessages()]);
  assert.deepEqual(types.slice(0, 2), ["start", "text-start"]);
  assert.deepEqual(types.slice(-2), ["text-end", "finish"]);

  const message = await finished(chatId, serial);
  assert.equal(message.extras.stream, "complete");
  assert.ok(message.data.endsWith(" t600"));
  assert.equal(last.id, message.id);
  assert.equal(textOf(last), message.data);
});

test("resuming mid-stream through useChat's machinery yields the full text exactly once", async () => {
  const chatId = randomUUID();
  const serial = await ask(chatId, "Resume me [[tokens:400]] [[tps:400]]");
  await until(chatId, serial, (m) => m.data.length > 100);
  const chat = new TestChat({ id: chatId, transport: transport(droppingFetch(5)) });

  await chat.resumeStream(); // connects mid-stream, then the network drops
  assert.equal(chat.status, "error");
  assert.equal(chat.messages.length, 1);
  const partial = textOf(chat.messages[0]);
  assert.ok(partial.length > 0, "some text arrived before the drop");

  await chat.resumeStream(); // what useChat does on reconnect
  const message = await finished(chatId, serial);
  assert.equal(message.extras.stream, "complete");
  assert.equal(chat.status, "ready");
  assert.equal(chat.messages.length, 1);
  assert.equal(chat.messages[0].role, "assistant");
  assert.equal(textOf(chat.messages[0]), message.data);
  assert.ok(message.data.startsWith(partial) && partial.length < message.data.length);
});

test("a cancelled response ends the resumed stream with an abort", async () => {
  const chatId = randomUUID();
  const serial = await ask(chatId, "[[tokens:2000]] [[tps:200]]");
  await until(chatId, serial, (m) => m.data.length > 0);
  const stream = await transport().reconnectToStream({ chatId });
  assert.ok(stream);
  const chunks = [];
  const reading = (async () => {
    for await (const chunk of stream) chunks.push(chunk);
  })();
  await fetch(`${base}/channels/chat:${chatId}/messages`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ name: "cancel", extras: { target: serial } }),
  });
  await reading;
  const message = await finished(chatId, serial);
  assert.equal(message.extras.stream, "cancelled");
  assert.deepEqual(chunks.slice(-2).map((c) => c.type), ["text-end", "abort"]);
  const text = chunks.filter((c) => c.type === "text-delta").map((c) => c.delta).join("");
  assert.equal(text, message.data);
});
