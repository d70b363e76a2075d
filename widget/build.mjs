// Bundles src/ into dist/polku-chat.js: one minified IIFE with the CSS inlined.
// `node build.mjs --watch` rebuilds on change (unminified, with an inline source map).
import { readFile } from 'node:fs/promises';
import * as esbuild from 'esbuild';

const watch = process.argv.includes('--watch');

// `import css from './styles.css'` gives the stylesheet as a (minified) string
// that the widget puts into its shadow root.
const cssText = {
  name: 'css-text',
  setup(build) {
    build.onLoad({ filter: /\.css$/ }, async (args) => {
      const source = await readFile(args.path, 'utf8');
      const { code } = await esbuild.transform(source, { loader: 'css', minify: !watch });
      return { contents: code, loader: 'text' };
    });
  },
};

const options = {
  entryPoints: ['src/index.js'],
  outfile: 'dist/polku-chat.js',
  bundle: true,
  format: 'iife',
  platform: 'browser',
  target: ['es2019', 'chrome80', 'firefox78', 'safari13'],
  minify: !watch,
  sourcemap: watch ? 'inline' : false,
  legalComments: 'eof',
  plugins: [cssText],
  define: { 'process.env.NODE_ENV': '"production"' },
  logLevel: 'info',
};

if (watch) {
  const ctx = await esbuild.context(options);
  await ctx.watch();
} else {
  await esbuild.build(options);
}
