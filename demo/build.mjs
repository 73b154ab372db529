// Builds the demo pages into dist/: one ES module bundle per page (the
// page's code and the TypeScript SDK from ../sdk/typescript/src), plus the
// static HTML and CSS. `tether demo` serves dist/ (see --assets).
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
  entryPoints: ['chat', 'operator', 'planner'].map((page) => join(root, 'src', `${page}.ts`)),
  outdir: dist,
  bundle: true,
  format: 'esm',
  target: 'es2022',
  sourcemap: true,
  minify: false,
  logLevel: 'warning',
});
console.log(`built ${dist}`);
