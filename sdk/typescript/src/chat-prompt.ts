/**
 * What a chat transport sends: the user's message as a Tether message, and
 * the conversation in the OpenAI chat format the server's LLM bridge passes
 * upstream (`POST /channels/{ch}/llm`). Only the text parts of AI SDK UI
 * messages are carried: the bridge speaks plain chat completions, with no
 * tools or files.
 */

import type { ChatMessageLike } from './ai-types.js';

/** One message of an OpenAI chat completion request, as the bridge takes it. */
export interface ModelMessage {
  role: 'system' | 'user' | 'assistant';
  content: string;
}

/** The text of a UI message: its text parts, joined. */
export function textOf(message: Pick<ChatMessageLike, 'parts'>): string {
  let text = '';
  for (const part of message.parts) if (part.type === 'text') text += part.text ?? '';
  return text;
}

/**
 * The conversation for the bridge, oldest first, led by `system` when one is
 * given. Messages with no text (an answer stopped before its first token)
 * are left out: an empty turn only confuses a model.
 */
export function toModelMessages(messages: readonly Pick<ChatMessageLike, 'role' | 'parts'>[], system?: string): ModelMessage[] {
  const out: ModelMessage[] = system ? [{ role: 'system', content: system }] : [];
  for (const m of messages) {
    const content = textOf(m);
    if (content !== '') out.push({ role: m.role, content });
  }
  return out;
}
