#!/usr/bin/env node
// The tributary CLI: runs the TypeScript sources through tsx (no build step on a fresh clone). Works from a checkout
// (npm run tributary -- ...) and as the `tributary` command that `npm link` or a global install puts on the PATH: Node
// follows that link to this file, so the sources and node_modules beside it are found.
process.env.AWS_SDK_JS_NODE_VERSION_SUPPORT_WARNING_DISABLED ??= 'true';
require('tsx/cjs');
const { runFromShell } = require('../functions/cli/main.ts');

/** Exits once what was written to stdout and stderr is out: a pipe is written asynchronously, and process.exit()
 *  would cut a long output (inbox --json) short. */
function exitWhenFlushed(code) {
  process.exitCode = code;
  let pending = 2;
  const done = () => {
    if (--pending === 0) process.exit(code);
  };
  process.stdout.write('', done);
  process.stderr.write('', done);
}

runFromShell(process.argv.slice(2)).then(exitWhenFlushed, (err) => {
  process.stderr.write(`tributary: unexpected error: ${err && err.stack ? err.stack : err}\n`);
  exitWhenFlushed(1);
});
