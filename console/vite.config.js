// The console's build: `npm run build` writes dist/ (index.html and hashed assets/), which
// embed.mjs turns into the C table arun serves. No source maps and no inlined modulepreload
// polyfill: the page is served by arun only, to browsers that know modules.
import { defineConfig } from 'vite';
import preact from '@preact/preset-vite';

export default defineConfig({
  plugins: [preact({ devtoolsInProd: false, prefreshEnabled: false })],
  base: '/',
  build: {
    outDir: 'dist',
    emptyOutDir: true,
    sourcemap: false,
    modulePreload: { polyfill: false },
    assetsInlineLimit: 0,
    target: 'es2020',
    reportCompressedSize: false,
  },
});
