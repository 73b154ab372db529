// The React page (/demo/react, demo/src/react.tsx on @tether/react) in a
// real browser, against the real `tether demo` binary: the answer streams
// into one message rendered by useMessages, presence and the connection
// state come from their hooks, and a network drop, a refresh and Stop
// behave as on the plain chat page. Run after `npm run build`.

import assert from 'node:assert/strict';
import {
  answerText,
  ask,
  countTokens,
  counting,
  demoSuite,
  eventually,
  history,
  scenario,
  shownMessages,
  storedResponses,
  tokenCount,
} from './harness.mjs';

const { url, getBrowser } = demoSuite({ tokensPerSecond: 60 });

scenario('react page: the answer streams into one message, presence and connection come from hooks', getBrowser, url, async ({ open, shot }) => {
  const page = await open('/demo/react');
  const channel = await page.textContent('#channel-name');
  assert.match(channel, /^conversation:u-[0-9a-f]{8}~react$/);
  await page.waitForSelector('#conn[data-state=connected]');
  // usePresence: this tab and the assistant.
  await page.waitForSelector('.member.me');
  await page.waitForSelector('.member.agent[data-client=assistant]');

  await ask(page, 'Count please [[tokens:120]] [[tps:60]]');
  // The prompt shows through usePublish → the server → useMessages.
  await page.waitForSelector('.msg-user .text');
  assert.equal(await page.textContent('.msg-user .text'), 'Count please [[tokens:120]] [[tps:60]]');
  // Mid-stream: one growing bubble, marked streaming, with the Stop button.
  await eventually(async () => (await tokenCount(page)) >= 10, { message: '10 tokens' });
  await page.waitForSelector('.msg-assistant[data-status=streaming]');
  assert.equal((await page.$$('.msg-assistant')).length, 1, 'one message for the whole answer');
  await shot(page, 'streaming');
  await page.waitForSelector('.msg-assistant[data-status=complete]', { timeout: 30_000 });
  await page.waitForSelector('#stop', { state: 'detached' });
  const text = await answerText(page);
  assert.equal(countTokens(text), 120);
  assert.equal(text, counting(120));

  const stored = (await history(url(), channel)).filter((m) => ['prompt', 'response'].includes(m.name));
  assert.deepEqual(
    (await shownMessages(page)).map((m) => [m.serial, m.name, m.text]),
    stored.map((m) => [m.serial, m.name, String(m.data)]),
    'the page shows exactly what the server stored',
  );
  assert.equal(await page.getAttribute('#send', 'data-pending'), '0');
  await shot(page, 'complete');
});

scenario('react page: a network drop mid-answer, then a refresh: nothing lost or doubled', getBrowser, url, async ({ open, shot }) => {
  const page = await open('/demo/react');
  const channel = await page.textContent('#channel-name');
  await ask(page, 'Keep going [[tokens:300]] [[tps:60]]');
  await eventually(async () => (await tokenCount(page)) >= 20, { message: '20 tokens before the drop' });
  await page.click('#drop');
  // useConnectionState follows the drop and the reconnect.
  await page.waitForSelector('#conn:not([data-state=connected])', { timeout: 5_000 });
  await shot(page, 'dropped');
  await page.waitForSelector('#conn[data-state=connected]', { timeout: 15_000 });
  await eventually(async () => (await tokenCount(page)) >= 60, { message: '60 tokens after the reconnect' });
  const [during] = await storedResponses(url(), channel);
  assert.equal(during.extras.stream, 'streaming', 'the refresh must happen mid-answer');

  await page.reload();
  await page.waitForSelector('body[data-ready=true]');
  await page.waitForSelector('.msg-assistant[data-status=complete]', { timeout: 30_000 });
  const text = await answerText(page);
  assert.equal(text, counting(300));
  const responses = await storedResponses(url(), channel);
  assert.equal(responses.length, 1);
  assert.equal(responses[0].data, text);
});

scenario('react page: Stop ends the answer cancelled', getBrowser, url, async ({ open }) => {
  const page = await open('/demo/react');
  const channel = await page.textContent('#channel-name');
  await ask(page, 'A very long one [[tokens:3000]] [[tps:50]]');
  await eventually(async () => (await tokenCount(page)) >= 15, { message: '15 tokens' });
  await page.click('#stop');
  await page.waitForSelector('.msg-assistant[data-status=cancelled]', { timeout: 10_000 });
  await page.waitForSelector('#stop', { state: 'detached' });
  const stopped = await answerText(page);
  await new Promise((r) => setTimeout(r, 800));
  assert.equal(await answerText(page), stopped, 'no token after the stop');
  const [stored] = await storedResponses(url(), channel);
  assert.equal(stored.extras.stream, 'cancelled');
  assert.equal(stored.data, stopped);
  assert.ok(countTokens(stopped) < 3000);
});
