/**
 * The few shapes of the Vercel AI SDK (`ai` 6.x) that the chat transport
 * reads and writes, declared here instead of imported from `ai`.
 *
 * Why not `import type { UIMessage, UIMessageChunk } from 'ai'`: the emitted
 * `.d.ts` files would then import `ai`, and an app that does not use the AI
 * SDK (and type-checks its dependencies, `skipLibCheck: false`) would fail
 * with "Cannot find module 'ai'". Declared structurally, they need nothing
 * installed, and TypeScript still accepts a `TetherChatTransport` wherever
 * `ai` wants a `ChatTransport`: the tests assign one to `ChatTransport` and
 * check every chunk against `ai`'s own schema, so a drift fails there.
 */

/** What the transport reads of an AI SDK `UIMessage`: its id, role and text parts. */
export interface ChatMessageLike {
  id: string;
  role: 'system' | 'user' | 'assistant';
  parts: ReadonlyArray<{ type: string; text?: string }>;
}

/**
 * The AI SDK UI message chunks this SDK produces: a subset of `ai`'s
 * `UIMessageChunk` (text only, as Tether's stored responses are text).
 */
export type UIChunk =
  | { type: 'start'; messageId?: string }
  | { type: 'text-start'; id: string }
  | { type: 'text-delta'; id: string; delta: string }
  | { type: 'text-end'; id: string }
  | { type: 'finish'; finishReason?: 'stop' }
  | { type: 'abort'; reason?: string }
  | { type: 'error'; errorText: string };

/** The request options `ai` passes along (`sendMessage(msg, { body })`); only `body` is used. */
export interface ChatRequestOptionsLike {
  /** Merged into the LLM bridge request. */
  body?: object;
}
