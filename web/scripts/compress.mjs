// Precompress the built UI (brotli and gzip, both at maximum) so the server never compresses at run time.
// Also writes dist/.build-stamp, which build.rs compares with the sources' modification times.
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { brotliCompressSync, constants, gzipSync } from 'node:zlib';

const dist = new URL('../dist/', import.meta.url).pathname;
const compressible = /\.(js|css|html|svg|json|txt|map)$/;
let saved = 0;
function walk(dir) {
  for (const name of readdirSync(dir)) {
    const p = join(dir, name);
    if (statSync(p).isDirectory()) walk(p);
    else if (compressible.test(name)) {
      const data = readFileSync(p);
      const br = brotliCompressSync(data, { params: { [constants.BROTLI_PARAM_QUALITY]: 11 } });
      const gz = gzipSync(data, { level: 9 });
      if (br.length < data.length) writeFileSync(p + '.br', br);
      if (gz.length < data.length) writeFileSync(p + '.gz', gz);
      saved += data.length - br.length;
    }
  }
}
walk(dist);
writeFileSync(join(dist, '.build-stamp'), new Date().toISOString() + '\n');
console.log(`precompressed web/dist (brotli saves ${(saved / 1024).toFixed(1)} KiB)`);
