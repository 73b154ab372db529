// Test harness: starts the real `tether demo` binary on a free port, drives
// headless Chromium (Debian's /usr/bin/chromium) with playwright-core, and
// saves a screenshot of every open page when a test fails.
//
// Environment:
//   TETHER_BIN        the binary (default ../../target/debug/tether)
//   CHROMIUM          the browser (default /usr/bin/chromium)
//   DEMO_SCREENSHOTS  set to 1 to also save screenshots at the tests' key
//                     moments (for looking at the UI), in test-artifacts/

import { spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = dirname(fileURLToPath(import.meta.url));
export const demoDir = resolve(here, '..');
export const artifacts = join(demoDir, 'test-artifacts');
const bin = process.env.TETHER_BIN ?? resolve(demoDir, '../target/debug/tether');

/** Starts `tether demo` and resolves with its URL once it listens. */
export async function startDemo({ tokensPerSecond = 60 } = {}) {
  const dataDir = mkdtempSync(join(tmpdir(), 'tether-demo-test-'));
  const child = spawn(
    bin,
    [
      'demo',
      '--listen', '127.0.0.1:0',
      '--data-dir', dataDir,
      '--assets', join(demoDir, 'dist'),
      '--tokens-per-second', String(tokensPerSecond),
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, TETHER_LOG: process.env.TETHER_LOG ?? 'warn' } },
  );
  let stderr = '';
  child.stderr.on('data', (chunk) => {
    stderr = (stderr + chunk).slice(-20_000);
  });
  const url = await new Promise((resolveUrl, reject) => {
    let out = '';
    const timer = setTimeout(() => reject(new Error(`tether demo did not start in time:\n${stderr}`)), 30_000);
    child.stdout.on('data', (chunk) => {
      out += chunk;
      const found = /listening on (\S+)/.exec(out);
      if (found) {
        clearTimeout(timer);
        resolveUrl(found[1]);
      }
    });
    child.on('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`tether demo exited with ${code}:\n${stderr}`));
    });
  });
  return {
    url,
    logs: () => stderr,
    async stop() {
      if (child.exitCode === null) {
        const exited = new Promise((r) => child.once('exit', r));
        child.kill('SIGTERM');
        const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
        await exited;
        clearTimeout(timer);
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** Headless Chromium with a fresh profile (playwright makes a temporary user-data-dir per launch). */
export function launchBrowser() {
  return chromium.launch({
    executablePath: process.env.CHROMIUM ?? '/usr/bin/chromium',
    headless: true,
    args: [
      '--headless',
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
    ],
  });
}

function slug(text) {
  return text.toLowerCase().replace(/[^a-z0-9]+/g, '-').replace(/^-|-$/g, '').slice(0, 60);
}

/**
 * A browser test: `fn({open, newUser, shot})`. `open(path)` opens a page in
 * this test's first browser context (one user: its tabs share
 * localStorage); `newUser()` makes another context (another person).
 * On failure every open page is screenshotted into test-artifacts/.
 */
export function scenario(name, getBrowser, baseUrl, fn, { timeout = 90_000 } = {}) {
  test(name, { timeout }, async () => {
    const browser = getBrowser();
    const contexts = [];
    const pages = [];
    const newUser = async () => {
      const context = await browser.newContext({ viewport: { width: 1280, height: 820 } });
      contexts.push(context);
      return {
        context,
        async open(path) {
          const page = await context.newPage();
          pages.push(page);
          page.on('pageerror', (err) => console.error(`[page error] ${err.message}`));
          await page.goto(new URL(path, baseUrl()).toString());
          await page.waitForSelector('body[data-ready=true]', { timeout: 20_000 });
          return page;
        },
      };
    };
    const first = await newUser();
    const shot = async (page, label) => {
      if (process.env.DEMO_SCREENSHOTS !== '1') return;
      mkdirSync(artifacts, { recursive: true });
      await page.screenshot({ path: join(artifacts, `${slug(name)}--${slug(label)}.png`) });
    };
    try {
      await fn({ open: first.open, newUser, shot });
    } catch (err) {
      mkdirSync(artifacts, { recursive: true });
      for (const [index, page] of pages.entries()) {
        if (page.isClosed()) continue;
        const file = join(artifacts, `FAILED-${slug(name)}-${index + 1}.png`);
        await page.screenshot({ path: file, fullPage: true }).catch(() => undefined);
        console.error(`screenshot: ${file}`);
      }
      throw err;
    } finally {
      for (const context of contexts) await context.close().catch(() => undefined);
    }
  });
}

/** Every message of `channel` from the server's history, oldest first. */
export async function history(baseUrl, channel) {
  const messages = [];
  let cursor;
  for (;;) {
    const query = new URLSearchParams({ direction: 'forwards', limit: '1000' });
    if (cursor) query.set('cursor', cursor);
    const reply = await fetch(`${baseUrl}/channels/${encodeURIComponent(channel)}/messages?${query}`);
    if (!reply.ok) throw new Error(`history: HTTP ${reply.status}`);
    const page = await reply.json();
    messages.push(...page.messages);
    if (!page.next) return messages;
    cursor = page.next;
  }
}

/** The messages a page shows: `{serial, name, status, text}` in order. */
export function shownMessages(page) {
  return page.$$eval('#messages > li', (items) =>
    items.map((li) => ({
      serial: li.dataset.serial,
      name: li.dataset.name,
      status: li.dataset.status ?? '',
      text: (li.querySelector('.text') ?? li).textContent,
    })),
  );
}

/** What the page should show for a stored message. */
export function expectedText(message) {
  return message.data === null || message.data === undefined ? '(message deleted)' : String(message.data);
}

/** Resolves once `predicate()` returns a truthy value, polling. */
export async function eventually(predicate, { timeout = 15_000, interval = 100, message = 'condition' } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      last = await predicate();
      if (last) return last;
    } catch (err) {
      last = err;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${message} (last: ${last})`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

/** `Counting: t1 t2 ... tN`, the built-in model's answer to `[[tokens:N]]`. */
export function counting(n) {
  return `Counting:${Array.from({ length: n }, (_, i) => ` t${i + 1}`).join('')}`;
}

/** Checks that `text` is `Counting:` then t1, t2, ... in order, none missing or repeated; returns the count. */
export function countTokens(text) {
  const tokens = text.replace(/^Counting:/, '').trim().split(' ').filter(Boolean);
  tokens.forEach((token, index) => {
    if (token !== `t${index + 1}`) throw new Error(`token ${index + 1} is ${token}: ${text.slice(0, 200)}…`);
  });
  return tokens.length;
}

/**
 * Starts `tether demo` and a browser before a test file's scenarios and
 * stops both after them; returns their getters for `scenario`.
 */
export function demoSuite({ tokensPerSecond = 60 } = {}) {
  let demo;
  let browser;
  before(async () => {
    demo = await startDemo({ tokensPerSecond });
    browser = await launchBrowser();
  });
  after(async () => {
    await browser?.close();
    await demo?.stop();
  });
  return { url: () => demo.url, getBrowser: () => browser };
}

/** The assistant's answer as the chat pages render it. */
export const answerText = (page) => page.textContent('.msg-assistant .text');

/** How many numbered tokens (` t1`, ` t2`, ...) the answer shows so far. */
export const tokenCount = async (page) => ((await answerText(page).catch(() => '')) ?? '').match(/ t\d+/g)?.length ?? 0;

/** Types `text` into a chat page's input and sends it. */
export async function ask(page, text) {
  await page.fill('#input', text);
  await page.press('#input', 'Enter');
}

/** The channel's stored `response` messages (history over REST). */
export async function storedResponses(baseUrl, channel) {
  return (await history(baseUrl, channel)).filter((m) => m.name === 'response');
}
