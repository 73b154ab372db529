/**
 * `TetherChatTransport`: the Vercel AI SDK's `ChatTransport` over Tether, so
 * `useChat({ transport: new TetherChatTransport({...}) })` sends, receives,
 * resumes and stops through a Tether channel instead of an app route.
 *
 * - **send**: the user's message is published on the chat's channel
 *   (`chat:{chatId}` by default) as a stored `prompt`; then either the
 *   server's LLM bridge is started with the conversation (`mode: 'bridge'`,
 *   `POST /channels/{ch}/llm`), or an agent's streamed response to the
 *   prompt is awaited (`mode: 'agent'`).
 * - **receive**: the response is read from the channel with this SDK's
 *   subscription and turned into UI message chunks (ui-stream.ts). Not from
 *   `GET /channels/{ch}/aisdk/stream`: that endpoint serves "the latest
 *   streaming response", so a response that ended before the request, an
 *   agent's response that does not exist yet, or a second tab's newer turn
 *   would be missed or mixed up, while here the response is followed by its
 *   serial. It also shares the client's one WebSocket (token renewal on the
 *   live connection, resume across network drops) among all chats.
 * - **resume** (`reconnectToStream`, `useChat({ resume: true })`): the
 *   channel's latest response, if still streaming, replayed from its start
 *   (`resumeStreamIsReplay`), so a reloaded page or another device ends
 *   with the full text exactly once.
 * - **stop** (`abortSignal`): publishes the cancel convention message for
 *   the response (`channel.cancel(serial)`), so the bridge or agent ends it
 *   `cancelled` for every reader.
 *
 * Nothing here imports `ai`: its shapes are declared in ai-types.ts, so the
 * SDK builds, type-checks and runs without it (an optional peer
 * dependency), and the tests check the transport against `ai`'s own types.
 */

import type { ChatMessageLike, ChatRequestOptionsLike, UIChunk } from './ai-types.js';
import { awaitResponse } from './await-response.js';
import type { Channel } from './channel.js';
import { textOf, toModelMessages } from './chat-prompt.js';
import { type ClientOptions, TetherClient } from './client.js';
import { isStreamEnded, streamStatus } from './conventions.js';
import { find, responseStream } from './ui-stream.js';
import type { Message, Serial } from './types.js';
import { seg } from './util.js';

/** Settings of the LLM bridge request (`POST /channels/{ch}/llm`), see docs/ai-streaming.md. */
export interface BridgeOptions {
  /** A system prompt put first in the conversation sent upstream. */
  system?: string;
  /** The model: the server's `model` or one of its `allowed_models` (default: the server's). */
  model?: string;
  /** 0-2. */
  temperature?: number;
  /** Upper bound on the answer's tokens. */
  max_tokens?: number;
  /** The response message's name (default `response`). */
  name?: string;
  /** Merged into the response's extras (`stream` and `job` are the bridge's). */
  extras?: Record<string, unknown>;
}

/** How {@link TetherChatTransport} finds the channel, asks and answers. */
export interface ChatTransportOptions {
  /** The channel of a chat (default `chat:{chatId}`). */
  channel?: (chatId: string) => string;
  /**
   * `bridge` (default): the server's LLM bridge answers. `agent`: your
   * agent, subscribed to the channel, answers the published prompt with a
   * streamed response (ideally with `extras.prompt` set to the prompt's
   * serial).
   */
  mode?: 'bridge' | 'agent';
  /** The bridge request's settings (bridge mode). */
  bridge?: BridgeOptions;
  /** The name of the published user message (default `prompt`, what agents look for). */
  promptName?: string;
  /** Agent mode: how long to wait for an agent's response to start (default 30 s); then the chat errors. */
  agentTimeoutMs?: number;
  /**
   * Whether `stop()` cancels the response on the server for everyone
   * (default true). With false, stopping only stops this chat reading.
   */
  cancelOnStop?: boolean;
}

/**
 * Options of {@link TetherChatTransport}: either `client`, a
 * {@link TetherClient} to share (its credential is used), or the client
 * options to make one (`url` and `token` / `authCallback` / `key`, as for
 * `new TetherClient`).
 */
export type TetherChatTransportOptions = ChatTransportOptions & ({ client: TetherClient } | (ClientOptions & { client?: undefined }));

/** The bridge's answer to a started job. */
interface BridgeStarted {
  job: string;
  serial: Serial;
}

/** Messages looked at, newest first, for the latest response (the server's aisdk endpoint uses the same). */
const SCAN = 50;

/**
 * A `ChatTransport` for `useChat` / `Chat` / `AbstractChat` that talks to
 * Tether directly from the page:
 *
 * ```ts
 * const transport = new TetherChatTransport({ url, authCallback: getToken });
 * const { messages, sendMessage, stop } = useChat({ id: chatId, resume: true, transport });
 * ```
 */
export class TetherChatTransport<UI_MESSAGE extends ChatMessageLike = ChatMessageLike> {
  /** Resumed streams start from the response's beginning: the chat resets the message on the first `start`. */
  readonly resumeStreamIsReplay = true;
  /** The client used for the channels and the bridge request. */
  readonly client: TetherClient;
  private readonly ownsClient: boolean;
  private readonly opts: ChatTransportOptions;
  /** Per chat, how many reconnects were made: tells a superseded resume from a stop. */
  private readonly reconnects = new Map<string, number>();

  constructor(options: TetherChatTransportOptions) {
    const { channel, mode, bridge, promptName, agentTimeoutMs, cancelOnStop, client, ...clientOptions } = options;
    this.opts = { channel, mode, bridge, promptName, agentTimeoutMs, cancelOnStop };
    this.ownsClient = client === undefined;
    this.client = client ?? new TetherClient(clientOptions as ClientOptions);
  }

  /** The channel name of a chat. */
  channelName(chatId: string): string {
    return this.opts.channel ? this.opts.channel(chatId) : `chat:${chatId}`;
  }

  /**
   * Publishes the user's new message, starts the answer (bridge) or waits
   * for it (agent), and returns it as a UI message stream. A refused
   * publish or bridge request rejects, which the chat shows as its error.
   * `body` (from `sendMessage(msg, { body })`) is merged into the bridge
   * request, e.g. `{ model: 'gpt-4o' }`.
   */
  async sendMessages(
    options: {
      trigger: 'submit-message' | 'regenerate-message';
      chatId: string;
      messageId: string | undefined;
      messages: UI_MESSAGE[];
      abortSignal: AbortSignal | undefined;
    } & ChatRequestOptionsLike,
  ): Promise<ReadableStream<UIChunk>> {
    const { trigger, chatId, messages, abortSignal, body } = options;
    const channel = this.client.channel(this.channelName(chatId));
    const agent = this.opts.mode === 'agent';
    // Attaching starts before the prompt goes out, so the view has the answer
    // however fast the agent is (and a fresh attach's rewind covers the rest).
    if (agent) channel.attach().catch(() => undefined);
    const prompt = await this.publishPrompt(channel, messages, trigger, agent);
    // Stopped while the prompt went out: start no (paid) answer at all.
    if (abortSignal?.aborted && !agent) throw abortError();
    const serial = agent
      ? awaitResponse(channel, requirePrompt(prompt), this.opts.agentTimeoutMs ?? 30_000)
      : this.startBridge(channel, messages, prompt, body);
    this.cancelOnAbort(channel, serial, abortSignal);
    if (!agent) await serial;
    return responseStream(channel, serial);
  }

  /**
   * The chat's response if it is still streaming, from its beginning; null
   * when nothing is streaming (the chat stays as it is: a finished answer
   * is in the channel's history).
   */
  async reconnectToStream(options: { chatId: string; abortSignal?: AbortSignal } & ChatRequestOptionsLike): Promise<ReadableStream<UIChunk> | null> {
    const { chatId, abortSignal } = options;
    const generation = (this.reconnects.get(chatId) ?? 0) + 1;
    this.reconnects.set(chatId, generation);
    const channel = this.client.channel(this.channelName(chatId));
    const response = await latestResponse(channel);
    if (!response || streamStatus(response) !== 'streaming') return null;
    // A chat aborts a resume both on stop() and when a newer resumeStream()
    // replaces it (React's strict mode runs effects twice): only the first is
    // a request to stop the answer. The replacement reconnects synchronously
    // after the abort, so by the next task the count tells them apart.
    this.cancelOnAbort(channel, Promise.resolve(response.serial), abortSignal, () => this.reconnects.get(chatId) === generation);
    return responseStream(channel, response.serial);
  }

  /** Closes the client if this transport made it (a shared `client` is left to its owner). */
  close(): void {
    if (this.ownsClient) this.client.close();
  }

  /**
   * Publishes the last message if it is the user's: always on a new
   * message (its UI id is the Tether id, so a retry is deduplicated); on a
   * regenerate only for an agent, which needs a prompt to answer (the bridge
   * is simply started again).
   *
   * Over REST rather than the WebSocket: a refused credential or capability
   * then fails this request at once and shows as the chat's error, where a
   * WebSocket publish would wait in the queue of a socket that keeps
   * reconnecting.
   */
  private async publishPrompt(channel: Channel, messages: UI_MESSAGE[], trigger: string, agent: boolean): Promise<Serial | undefined> {
    const last = messages[messages.length - 1];
    if (!last || last.role !== 'user') return undefined;
    const prompt = { name: this.promptName, data: textOf(last) };
    if (trigger === 'submit-message') {
      return (await this.client.rest.publish(channel.name, { ...prompt, id: last.id, extras: { role: 'user' } })).serial;
    }
    if (!agent) return undefined;
    return (await this.client.rest.publish(channel.name, { ...prompt, extras: { role: 'user', regenerate: last.id } })).serial;
  }

  private get promptName(): string {
    return this.opts.promptName ?? 'prompt';
  }

  /** `POST /channels/{ch}/llm`; resolves with the response's serial once the server has created it. */
  private async startBridge(channel: Channel, messages: UI_MESSAGE[], prompt: Serial | undefined, body: object | undefined): Promise<Serial> {
    const { system, extras, ...settings } = this.opts.bridge ?? {};
    const request: Record<string, unknown> = {
      ...settings,
      messages: toModelMessages(messages, system),
      extras: prompt === undefined ? { ...extras } : { ...extras, prompt },
      ...body,
    };
    const started = await this.client.rest.call<BridgeStarted>('POST', `/channels/${seg(channel.name)}/llm`, request);
    return started.serial;
  }

  /**
   * On abort, publishes `cancel` for the response (once its serial is
   * known, so a stop while the answer is still starting works too), unless
   * it has ended already or `stillWanted` says the abort was not a stop.
   */
  private cancelOnAbort(channel: Channel, serial: Promise<Serial>, signal: AbortSignal | undefined, stillWanted: () => boolean = () => true): void {
    if (!signal || this.opts.cancelOnStop === false) return;
    const onAbort = () => {
      setTimeout(() => {
        if (!stillWanted()) return;
        serial
          .then(async (s) => {
            const current = find(channel.messages(), s) ?? (await channel.message(s));
            if (isStreamEnded(streamStatus(current))) return; // over already: no stray cancel message
            await channel.cancel(s);
          })
          .catch(() => {
            /* no response to cancel (the start failed), or the cancel failed: nothing more to do */
          });
      }, 0);
    };
    if (signal.aborted) onAbort();
    else signal.addEventListener('abort', onAbort, { once: true });
  }
}

/** What `fetch` throws when aborted: the chat treats an `AbortError` as a stop, not a failure. */
function abortError(): Error {
  const err = new Error('the chat was stopped');
  err.name = 'AbortError';
  return err;
}

/** Agent mode needs a prompt to wait for an answer to. */
function requirePrompt(prompt: Serial | undefined): Serial {
  if (prompt === undefined) throw new Error('agent mode: the last message must be a user message');
  return prompt;
}

/**
 * The channel's latest streamed response (the newest message with an
 * `extras.stream` status, among the last {@link SCAN}), by the server's own
 * rule for `aisdk/stream`: an older response under a newer one is not resumed.
 */
async function latestResponse(channel: Channel): Promise<Message | undefined> {
  for await (const page of channel.history({ direction: 'backwards', limit: SCAN })) {
    return page.messages.find((m) => m.action !== 'delete' && typeof m.extras?.['stream'] === 'string');
  }
  return undefined;
}
