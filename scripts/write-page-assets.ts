/**
 * Writes the web page's built assets into a folder: `tsx scripts/write-page-assets.ts DIR`. The service stack's
 * API function runs it after esbuild bundles the handler (MailFunction `pageAssets`), so the Lambda carries the
 * page pre-built beside its handler (functions/handlers/api.ts loads it from there at cold start).
 */
import path from 'node:path';
import { writePageAssets } from '../functions/web/page-assets';

const dir = process.argv[2];
if (!dir) {
  process.stderr.write('usage: tsx scripts/write-page-assets.ts DIR\n');
  process.exit(2);
}
writePageAssets(path.resolve(dir)).then(
  () => process.stdout.write(`page assets written to ${dir}\n`),
  (err: unknown) => {
    process.stderr.write(`could not build the page: ${(err as Error).message}\n`);
    process.exit(1);
  },
);
