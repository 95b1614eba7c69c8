'use strict';
// Preloaded into s3rver, the S3 stand-in of the tests and of the CLI's local-aws mode (functions/local/emulators.ts).
// s3rver's DeleteObject removes a key's folder once it is empty; a PutObject into that folder at the same moment has
// already created it and not yet opened its file, so the open fails with ENOENT on a write stream nobody listens
// to, and s3rver exits (seen in CI: every test after it failed with ECONNREFUSED). Empty folders are kept instead:
// they cost nothing, and the race is gone. s3rver 3.7's filesystem store calls fs-extra's rmdir only there.
const path = require('path');

const s3rverDir = path.dirname(require.resolve('s3rver/package.json'));
const fse = require(require.resolve('fs-extra', { paths: [s3rverDir] }));
fse.rmdir = async () => undefined;
