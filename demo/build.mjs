// Builds the demo pages into dist/: one ES module bundle per page (the
// page's code and the TypeScript SDK from ../sdk/typescript/src; the React
// page also React and the hooks from ../sdk/react/src), plus the static HTML
// and CSS. `tether demo` serves dist/ (see --assets).
import { build } from 'esbuild';
import { cpSync, mkdirSync, rmSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = dirname(fileURLToPath(import.meta.url));
const dist = join(root, 'dist');

rmSync(dist, { recursive: true, force: true });
mkdirSync(dist, { recursive: true });
cpSync(join(root, 'static'), dist, { recursive: true });
await build({
  entryPoints: [
    ...['chat', 'operator', 'planner'].map((page) => join(root, 'src', `${page}.ts`)),
    // The React page, on @tether/react's sources (../sdk/react/src).
    join(root, 'src', 'react.tsx'),
  ],
  // One copy of each: the React hooks import `@tether/client` and `react`
  // by name, and must get the SDK sources the other pages use and the React
  // installed here, not whatever sdk/react/node_modules may hold.
  alias: {
    '@tether/client': join(root, '../sdk/typescript/src/index.ts'),
    react: join(root, 'node_modules/react'),
    'react-dom': join(root, 'node_modules/react-dom'),
  },
  jsx: 'automatic',
  define: { 'process.env.NODE_ENV': '"production"' },
  outdir: dist,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  sourcemap: true,
  minify: false,
  logLevel: 'warning',
});
console.log(`built ${dist}`);
