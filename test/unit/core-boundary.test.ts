import { Linter } from 'eslint';
import tseslint from 'typescript-eslint';
import coreBoundary from '../../eslint/core-boundary.cjs';

/** The lint rule that keeps functions/core free of transports must refuse these imports there, and only there. */
describe('the functions/core import boundary', () => {
  const linter = new Linter({ configType: 'flat' });
  const config: Linter.Config[] = [
    { files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } },
    coreBoundary,
  ];
  const rulesHit = (code: string, filename: string) =>
    linter.verify(`${code}\nexport const x = 1;\n`, config, filename).map((m) => m.ruleId);

  it.each([
    "import { S3Client } from '@aws-sdk/client-s3';",
    "import { ImapFlow } from 'imapflow';",
    "import Pop3 from 'node-pop3';",
    "import type { Context } from 'aws-lambda';",
    "import { makeAwsClients } from '../shared/aws-clients';",
    "import { S3RawMailStore } from '../adapters/s3/raw-mail-store';",
  ])('refuses `%s` in functions/core', (code) => {
    expect(rulesHit(code, 'functions/core/sync.ts')).toContain('no-restricted-imports');
  });

  it('allows a core-internal import in functions/core', () => {
    expect(rulesHit("import { planPop3Sync } from './planners';", 'functions/core/sync.ts')).toEqual([]);
  });

  it('allows the AWS SDK in an adapter', () => {
    expect(
      rulesHit("import { S3Client } from '@aws-sdk/client-s3';", 'functions/adapters/s3/store.ts'),
    ).toEqual([]);
  });
});
