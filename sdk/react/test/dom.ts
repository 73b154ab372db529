/**
 * A browser-like global environment for React Testing Library: a jsdom
 * window whose globals (document, HTMLElement, MutationObserver, ...) are
 * copied onto Node's global object. Import it first in a test file, before
 * `@testing-library/react`, which looks for `document` when it loads.
 *
 * Not copied: what Node already has (fetch, URL, timers, EventTarget...),
 * jsdom's WebSocket and storages (tests hand the SDK the `ws` package and
 * choose persistence explicitly), and the window's own event methods, which
 * jsdom refuses to run on another `this`.
 */

import { JSDOM } from 'jsdom';

const dom = new JSDOM('<!doctype html><html><body></body></html>', { url: 'http://localhost/', pretendToBeVisual: true });
const win = dom.window as unknown as Record<string, unknown>;
const skip = new Set(['WebSocket', 'localStorage', 'sessionStorage', 'addEventListener', 'removeEventListener', 'dispatchEvent', 'self', 'top', 'parent', 'frames', 'globalThis']);
const g = globalThis as unknown as Record<string, unknown>;
for (const key of Object.getOwnPropertyNames(win)) {
  if (key in g || skip.has(key) || key.startsWith('_')) continue;
  const value = win[key];
  // Methods of the window (getComputedStyle, requestAnimationFrame) keep it as `this`.
  g[key] = typeof value === 'function' && /^[a-z]/.test(key) ? (value as (...a: unknown[]) => unknown).bind(dom.window) : value;
}
g['window'] = dom.window;

/** The jsdom instance, for tests that need its window directly. */
export { dom };
