/**
 * Test harness: runs the real Tether server binary (`TETHER_BIN`, default
 * the workspace's target/debug/tether) with `serve --dev`, on a free port and
 * a temporary data directory, and can restart it on the same port and data
 * (a real restart: sessions and logs survive, sockets are cut). Also the
 * client factory the tests share.
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { existsSync } from 'node:fs';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before } from 'node:test';
import { fileURLToPath } from 'node:url';

import { type ClientOptions, TetherClient, type WebSocketConstructor } from '@tether/client';
import { WebSocket as WS } from 'ws';

/** sdk/react, whether running from test/ or dist-test/test/. */
const pkgRoot = (() => {
  let dir = fileURLToPath(new URL('.', import.meta.url));
  while (!existsSync(join(dir, 'package.json'))) dir = resolve(dir, '..');
  return dir;
})();

/** A running test server. */
export interface Server {
  /** `http://127.0.0.1:PORT`. */
  url: string;
  /** Stops it (SIGTERM) and starts it again on the same port with the same data. */
  restart(opts?: { downMs?: number }): Promise<void>;
  /** Stops it for good and removes its data. */
  stop(): Promise<void>;
}

function binary(): string {
  const bin = process.env.TETHER_BIN ? resolve(process.env.TETHER_BIN) : resolve(pkgRoot, '../../target/debug/tether');
  if (!existsSync(bin)) throw new Error(`tether binary not found at ${bin}: build it (cargo build --bin tether) or set TETHER_BIN`);
  return bin;
}

function spawnServer(listen: string, dataDir: string): Promise<{ child: ChildProcess; url: string }> {
  const child = spawn(binary(), ['serve', '--dev', '--listen', listen, '--data-dir', dataDir], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, RUST_LOG: process.env.RUST_LOG ?? 'warn' },
  });
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => {
    stderr = (stderr + d.toString()).slice(-20000);
  });
  return new Promise((resolveStart, reject) => {
    let out = '';
    const fail = (err: Error) => {
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    const timer = setTimeout(() => fail(new Error(`server did not start within 30 s; stderr: ${stderr}`)), 30000);
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString();
      const m = /listening on (http:\/\/[^\s]+)/.exec(out);
      if (m?.[1]) {
        clearTimeout(timer);
        resolveStart({ child, url: m[1].replace(/\/+$/, '') });
      }
    });
    child.once('exit', (code, signal) => fail(new Error(`server exited early (${code ?? signal}); stderr: ${stderr}`)));
    child.once('error', fail);
  });
}

async function stopChild(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
  await exited;
  clearTimeout(timer);
}

/** Starts a development-mode server on a free port with a fresh data directory. */
export async function startServer(): Promise<Server> {
  const dir = await mkdtemp(join(tmpdir(), 'tether-react-test-'));
  const dataDir = join(dir, 'data');
  let { child, url } = await spawnServer('127.0.0.1:0', dataDir);
  const port = new URL(url).port;
  return {
    url,
    async restart({ downMs = 300 } = {}) {
      await stopChild(child);
      await sleep(downMs);
      ({ child, url } = await spawnServer(`127.0.0.1:${port}`, dataDir));
    },
    async stop() {
      await stopChild(child);
      await rm(dir, { recursive: true, force: true });
    },
  };
}

/** A `ws` constructor whose sockets are recorded, so a test can cut them like a network drop. */
/**
 * Starts a server before a test file's tests and stops it after them. The
 * handle reads through to the running server, so `url` and `restart` work
 * inside tests.
 */
export function serverSuite(): Pick<Server, 'url' | 'restart'> {
  let server: Server | undefined;
  before(async () => {
    server = await startServer();
  });
  after(async () => {
    await server?.stop();
  });
  const running = (): Server => {
    if (!server) throw new Error('the server is started in before()');
    return server;
  };
  return {
    get url() {
      return running().url;
    },
    restart: (opts) => running().restart(opts),
  };
}

export function trackingWebSocket(sockets: WS[]): WebSocketConstructor {
  return class extends WS {
    constructor(url: string, protocols?: string | string[]) {
      super(url, protocols);
      sockets.push(this);
    }
  };
}

/** Cuts every open socket in `sockets` (no close handshake). Returns how many. */
export function cut(sockets: WS[]): number {
  let n = 0;
  for (const ws of sockets) {
    if (ws.readyState === WS.OPEN || ws.readyState === WS.CONNECTING) {
      ws.terminate();
      n++;
    }
  }
  return n;
}

/** Options for a test client: the `ws` package (Node 20 has no global WebSocket), fast reconnects, no persistence, no roll-up. */
export function clientOptions(url: string, extra: Partial<ClientOptions> = {}): ClientOptions {
  return { url, WebSocket: WS, persist: false, rollupMs: 0, reconnect: { initialDelayMs: 20, maxDelayMs: 250 }, ...extra };
}

/** A client made with {@link clientOptions}. */
export function makeClient(url: string, extra: Partial<ClientOptions> = {}): TetherClient {
  return new TetherClient(clientOptions(url, extra));
}

/** Resolves after `ms`. */
export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `cond` until true, or fails after `ms` naming `what`. */
export async function until(cond: () => boolean, what: string, ms = 15000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

export { WS };
