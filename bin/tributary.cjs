#!/usr/bin/env node
// The tributary CLI: runs the TypeScript sources through tsx (no build step on a fresh clone).
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
require('tsx/cjs');
const { runFromShell } = require('../functions/cli/main.ts');
runFromShell(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (err) => {
    process.stderr.write(`tributary: unexpected error: ${err && err.stack ? err.stack : err}\n`);
    process.exit(1);
  },
);
