// The demo in a real browser, against the real `tether demo` binary.
// Run with `npm test` after `npm run build` (scripts/test does both).

import assert from 'node:assert/strict';

import {
  answerText,
  ask,
  countTokens,
  counting,
  demoSuite,
  eventually,
  expectedText,
  history,
  scenario,
  shownMessages,
  storedResponses,
  tokenCount,
} from './harness.mjs';

const { url, getBrowser } = demoSuite({ tokensPerSecond: 60 });

const storedResponse = (channel) => storedResponses(url(), channel);

scenario('refresh mid-stream: the answer continues and equals history, no token missing or doubled', getBrowser, url, async ({ open, shot }) => {
  const page = await open('/demo/chat');
  const channel = await page.textContent('#channel-name');
  await ask(page, 'Count for me, please [[tokens:300]] [[tps:60]]');
  await eventually(async () => (await tokenCount(page)) >= 40, { message: '40 tokens before the refresh' });
  const [before] = await storedResponse(channel);
  assert.equal(before.extras.stream, 'streaming', 'the refresh must happen mid-answer');
  await shot(page, 'before refresh');
  await page.reload();
  // The answer so far is shown at once (saved view), then continues live.
  await page.waitForSelector('.msg-assistant .text');
  const shownAtOnce = await tokenCount(page);
  assert.ok(shownAtOnce >= 40, `after the refresh ${shownAtOnce} tokens were shown at once`);
  await shot(page, 'right after refresh');
  await page.waitForSelector('.msg-assistant[data-status=complete]', { timeout: 30_000 });
  const text = await answerText(page);
  assert.equal(countTokens(text), 300);
  assert.equal(text, counting(300));
  const [stored] = await storedResponse(channel);
  assert.equal(stored.data, text, 'the page shows exactly what the server stored');
  assert.equal(stored.extras.stream, 'complete');
  // Only one message in history for the whole answer.
  assert.equal((await storedResponse(channel)).length, 1);
  await shot(page, 'complete');
});

scenario('network drop: the socket closes, the page reconnects and resumes, nothing lost', getBrowser, url, async ({ open, shot }) => {
  const page = await open('/demo/chat');
  const channel = await page.textContent('#channel-name');
  await ask(page, 'Keep going [[tokens:250]] [[tps:50]]');
  await eventually(async () => (await tokenCount(page)) >= 30, { message: '30 tokens before the drop' });
  await page.click('#drop');
  await page.waitForSelector('#conn:not([data-state=connected])', { timeout: 5_000 });
  await shot(page, 'dropped');
  await page.waitForSelector('#conn[data-state=connected]', { timeout: 15_000 });
  await page.waitForSelector('.msg-assistant[data-status=complete]', { timeout: 30_000 });
  const text = await answerText(page);
  assert.equal(text, counting(250));
  const [stored] = await storedResponse(channel);
  assert.equal(stored.data, text);
  const log = await page.textContent('#log');
  assert.match(log, /Simulated network drop/);
  assert.match(log, /Reconnected/);
});

scenario('two tabs: same conversation live, presence shows both devices, edit and delete propagate', getBrowser, url, async ({ open, shot }) => {
  const a = await open('/demo/chat');
  const channel = await a.textContent('#channel-name');
  const share = await a.getAttribute('#share', 'href');
  const b = await open(share);
  assert.equal(await b.textContent('#channel-name'), channel);
  // One user, two devices, on both pages; and the assistant.
  for (const page of [a, b]) {
    await page.waitForSelector('.member.me[data-devices="2"]', { timeout: 10_000 });
    await page.waitForSelector('.member.agent[data-client=assistant]');
  }

  await ask(a, 'Hello from tab A [[tokens:40]]');
  for (const page of [a, b]) await page.waitForSelector('.msg-assistant[data-status=complete]', { timeout: 20_000 });
  await ask(b, 'And hello from tab B [[tokens:20]]');
  for (const page of [a, b]) {
    await eventually(async () => (await page.$$('.msg-assistant[data-status=complete]')).length === 2, { message: 'two answers' });
  }

  // Edit the first prompt in tab A: tab B follows.
  const first = a.locator('.msg-user').first();
  const serial = await first.getAttribute('data-serial');
  await first.locator('.edit').click();
  await first.locator('.edit-input').fill('Hello from tab A (edited)');
  await first.locator('.save').click();
  await b.waitForFunction(
    (s) => document.querySelector(`li[data-serial="${s}"] .text`)?.textContent === 'Hello from tab A (edited)',
    serial,
  );
  assert.equal(await b.textContent(`li[data-serial="${serial}"] .edited`), '(edited)');

  // Delete the second prompt in tab B: tab A follows.
  const second = b.locator('.msg-user').nth(1);
  const secondSerial = await second.getAttribute('data-serial');
  await second.locator('.delete').click();
  await a.waitForFunction(
    (s) => document.querySelector(`li[data-serial="${s}"]`)?.classList.contains('deleted'),
    secondSerial,
  );
  await shot(a, 'tab A');
  await shot(b, 'tab B');

  // Both tabs converge on the same conversation, which is the server's.
  const stored = (await history(url(), channel)).filter((m) => ['prompt', 'response'].includes(m.name));
  await eventually(async () => {
    const [shownA, shownB] = [await shownMessages(a), await shownMessages(b)];
    assert.deepEqual(shownA, shownB);
    assert.deepEqual(
      shownA.map((m) => [m.serial, m.text]),
      stored.map((m) => [m.serial, expectedText(m)]),
    );
    return true;
  }, { message: 'identical conversations' });
  assert.equal(stored.find((m) => m.serial === serial).data, 'Hello from tab A (edited)');
  assert.equal(stored.find((m) => m.serial === secondSerial).data, null);
});

scenario('stop: the answer ends cancelled, and stays so after a refresh', getBrowser, url, async ({ open, shot }) => {
  const page = await open('/demo/chat');
  const channel = await page.textContent('#channel-name');
  await ask(page, 'A very long one [[tokens:3000]] [[tps:50]]');
  await eventually(async () => (await tokenCount(page)) >= 20, { message: '20 tokens' });
  await page.waitForSelector('.member.agent[data-status=streaming]');
  await page.click('#stop');
  await page.waitForSelector('.msg-assistant[data-status=cancelled]', { timeout: 10_000 });
  await page.waitForSelector('#stop', { state: 'hidden' });
  await page.waitForSelector('.member.agent[data-status=idle]', { timeout: 10_000 });
  const stopped = await answerText(page);
  await new Promise((r) => setTimeout(r, 1000));
  assert.equal(await answerText(page), stopped, 'no token after the stop');
  const [stored] = await storedResponse(channel);
  assert.equal(stored.extras.stream, 'cancelled');
  assert.equal(stored.data, stopped);
  assert.ok(countTokens(stopped) < 3000);
  await shot(page, 'cancelled');
  await page.reload();
  await page.waitForSelector('.msg-assistant[data-status=cancelled]');
  assert.equal(await answerText(page), stopped);
});

scenario('handoff: the operator claims, the user sees the operator, the agent stays silent, hand back works', getBrowser, url, async ({ open, newUser, shot }) => {
  const user = await open('/demo/chat');
  const channel = await user.textContent('#channel-name');
  await ask(user, 'Hi there [[tokens:10]]');
  await user.waitForSelector('.msg-assistant[data-status=complete]', { timeout: 20_000 });

  // A user cannot claim: only tokens with the operator capability can.
  const userId = channel.replace('conversation:', '');
  const session = await (await fetch(`${url()}/demo/api/session`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ role: 'user', client_id: userId }),
  })).json();
  const forged = await fetch(`${url()}/channels/${encodeURIComponent(channel)}/messages`, {
    method: 'POST',
    headers: { 'content-type': 'application/json', authorization: `Bearer ${session.token}` },
    body: JSON.stringify({ name: 'handoff', extras: { action: 'claim' } }),
  });
  assert.equal(forged.status, 403);

  const operator = await (await newUser()).open('/demo/operator');
  const entry = operator.locator(`.conv[data-channel="${channel}"]`);
  await entry.waitFor({ timeout: 10_000 });
  await entry.click();
  await operator.waitForFunction((c) => document.querySelector('#detail-name')?.textContent === c, channel);
  await operator.waitForSelector('.msg-user');
  await operator.click('#claim');
  await operator.waitForSelector('#release:not([hidden])');

  await user.waitForSelector('#banner:not([hidden])');
  await user.waitForSelector('.member.agent[data-status=handed-off]');
  await user.waitForSelector('.member.operator');
  await operator.waitForSelector('.member.agent[data-status=handed-off]');

  await operator.fill('#input', 'Hi, a human here. How can I help?');
  await operator.press('#input', 'Enter');
  await user.waitForFunction(() =>
    [...document.querySelectorAll('.msg-operator .text')].some((t) => t.textContent === 'Hi, a human here. How can I help?'),
  );

  // The agent stays silent while the operator has the conversation.
  await ask(user, 'Are you a bot? [[tokens:10]]');
  await operator.waitForFunction(() =>
    [...document.querySelectorAll('.msg-user .text')].some((t) => t.textContent.startsWith('Are you a bot?')),
  );
  await new Promise((r) => setTimeout(r, 2500));
  assert.equal((await storedResponse(channel)).length, 1, 'no answer while handed off');
  await shot(user, 'user during handoff');
  await shot(operator, 'operator during handoff');

  await operator.click('#release');
  await operator.waitForSelector('#claim:not([hidden])');
  await user.waitForSelector('#banner', { state: 'hidden' });
  await user.waitForSelector('.member.agent[data-status=idle]');
  await ask(user, 'Back to the assistant [[tokens:12]]');
  await eventually(async () => {
    const responses = await storedResponse(channel);
    return responses.length === 2 && responses[1].extras.stream === 'complete';
  }, { timeout: 20_000, message: 'the assistant answering again' });
  await user.waitForFunction(() => document.querySelectorAll('.msg-assistant[data-status=complete]').length === 2);
  const notices = await user.$$eval('#messages .notice', (items) => items.map((n) => n.textContent));
  assert.equal(notices.length, 2);
  assert.match(notices[0], /took over/);
  assert.match(notices[1], /handed the conversation back/);
});

scenario('multi-agent planner: every agent finishes, the plan appears, a refresh in the middle loses nothing', getBrowser, url, async ({ open, shot }) => {
  const page = await open('/demo/planner');
  const channel = await page.textContent('#channel-name');
  await page.fill('#input', '4 days in Lisbon in May from Berlin');
  await page.press('#input', 'Enter');
  // Progress comes through presence while the parts stream.
  await page.waitForFunction(
    () => [...document.querySelectorAll('.agent-card[data-state=working] .state')].some((s) => /%$/.test(s.textContent ?? '')),
    undefined,
    { timeout: 15_000 },
  );
  await page.waitForSelector('.member.agent[data-client=flights-agent], .member.agent[data-client=hotels-agent], .member.agent[data-client=weather-agent]');
  await page.waitForFunction(() => [...document.querySelectorAll('.agent-card .text')].some((t) => (t.textContent ?? '').length > 30));
  const plans = (await history(url(), channel)).filter((m) => m.name === 'plan');
  assert.equal(plans.length, 0, 'the refresh must happen before the plan');
  await shot(page, 'agents working');
  await page.reload();
  await page.waitForSelector('.trip');
  await page.waitForSelector('.plan[data-status=complete]', { timeout: 60_000 });
  for (const agent of ['flights', 'hotels', 'weather']) {
    await page.waitForSelector(`.agent-card[data-agent=${agent}][data-state=done]`);
  }
  await shot(page, 'plan complete');

  const stored = await history(url(), channel);
  const parts = stored.filter((m) => m.name === 'part');
  assert.deepEqual(parts.map((p) => p.extras.agent).sort(), ['flights', 'hotels', 'weather']);
  for (const part of parts) {
    assert.equal(part.extras.stream, 'complete');
    assert.equal(part.client_id, `${part.extras.agent}-agent`, 'each specialist writes its own part');
    const shown = await page.textContent(`.agent-card[data-agent=${part.extras.agent}] .text`);
    assert.equal(shown, part.data);
  }
  const plan = stored.find((m) => m.name === 'plan');
  assert.equal(plan.client_id, 'planner');
  assert.equal(plan.extras.stream, 'complete');
  assert.equal(await page.textContent('.plan-text'), plan.data);
  assert.match(plan.data, /Your 4-day trip to Lisbon in May/);
  assert.match(plan.data, /Day 4/);
  for (const part of parts) assert.ok(plan.data.includes(part.extras.summary), `the plan uses the ${part.extras.agent} part`);
});
