/**
 * Agent mode: after a prompt is published, find the agent's answer to it on
 * the channel. By the convention of docs/ai-streaming.md an agent answers
 * with a message whose `extras.stream` is `streaming` (later `complete`,
 * `cancelled` or `error`) and, when it says which prompt it answers, with
 * `extras.prompt` set to the prompt's serial.
 */

import type { Channel } from './channel.js';
import { streamStatus } from './conventions.js';
import type { Message, Serial } from './types.js';

/**
 * The first streamed response after `prompt` in `messages` (sorted by
 * serial) that answers it: one naming this prompt in `extras.prompt`, or
 * naming none (an agent that does not link its answers). A response naming
 * another prompt belongs to another turn (another tab asked at the same
 * time) and is skipped.
 */
export function responseTo(messages: readonly Message[], prompt: Serial): Message | undefined {
  let i = messages.length;
  while (i > 0 && (messages[i - 1] as Message).serial > prompt) i--;
  for (; i < messages.length; i++) {
    const m = messages[i] as Message;
    if (m.action === 'delete' || streamStatus(m) === undefined) continue;
    const target = m.extras?.['prompt'];
    if (target === undefined || target === prompt) return m;
  }
  return undefined;
}

/**
 * Resolves with the serial of the response to `prompt` once it is in the
 * channel's view (attaching the channel if needed); rejects after
 * `timeoutMs` with no answer, so a chat whose agent is down shows an error
 * instead of waiting forever.
 */
export function awaitResponse(channel: Channel, prompt: Serial, timeoutMs: number): Promise<Serial> {
  return new Promise<Serial>((resolve, reject) => {
    let done = false;
    let off: (() => void) | undefined;
    const settle = () => {
      done = true;
      clearTimeout(timer);
      off?.();
    };
    const timer = setTimeout(() => {
      settle();
      reject(new Error(`no agent answered on ${channel.name} within ${timeoutMs} ms`));
    }, timeoutMs);
    off = channel.onMessages((messages) => {
      if (done) return;
      const response = responseTo(messages, prompt);
      if (!response) return;
      settle();
      resolve(response.serial);
    });
    // onMessages calls back at once: the answer may already have been there.
    if (done) off();
  });
}
