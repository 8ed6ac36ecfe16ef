// Generate src/api.gen.ts (TypeScript types of the admin API) from openapi.json, the OpenAPI document the Rust side
// writes and keeps current. Run by `npm run build` and `npm run typecheck` before tsc.
// The file is only rewritten when its text changes: build.rs rebuilds the UI (and cargo recompiles the crate that
// embeds it) whenever a file under web/src is newer than the last build.
import { readFileSync, writeFileSync } from 'node:fs';
import openapiTS, { astToString, COMMENT_HEADER } from 'openapi-typescript';

const doc = new URL('../openapi.json', import.meta.url);
const out = new URL('../src/api.gen.ts', import.meta.url);

let ast;
try {
  ast = await openapiTS(JSON.parse(readFileSync(doc, 'utf8')), { emptyObjectsUnknown: true, alphabetize: true });
} catch (e) {
  console.error(`gen-api: cannot read ${doc.pathname}: ${e.message}`);
  process.exit(1);
}
const text = `${COMMENT_HEADER}// Generated from web/openapi.json by web/scripts/gen-api.mjs: do not edit.\n\n${astToString(ast)}`;
let old = '';
try {
  old = readFileSync(out, 'utf8');
} catch {
  /* first run */
}
if (old !== text) {
  writeFileSync(out, text);
  console.log('gen-api: wrote src/api.gen.ts');
}
