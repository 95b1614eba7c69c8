// The core knows no transport (docs/architecture.md, the shape of the code): no AWS SDK, no mail protocol library, no Lambda types, nothing
// outside functions/core. Shared by eslint.config.mjs and the unit test that proves the rule bites.
module.exports = {
  files: ['functions/core/**/*.ts'],
  rules: {
    'no-restricted-imports': [
      'error',
      {
        patterns: [
          { group: ['@aws-sdk/*'], message: 'functions/core must not import the AWS SDK: add a port.' },
          {
            group: ['imapflow', 'node-pop3'],
            message: 'functions/core must not import a mail protocol library.',
          },
          {
            group: ['aws-lambda', '@types/aws-lambda'],
            message: 'functions/core must not know about Lambda.',
          },
          {
            group: ['**/adapters/**', '**/handlers/**', '**/shared/aws-*'],
            message: 'core depends on nothing outside it.',
          },
        ],
      },
    ],
  },
};
