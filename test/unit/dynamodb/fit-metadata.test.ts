import { fitMetadata } from '../../../functions/adapters/dynamodb/message-index';
import type { MessageMetadata } from '../../../functions/core/model';

const base: MessageMetadata = {
  to: [],
  cc: [],
  snippet: 'hi',
  hasAttachments: false,
  attachments: [],
  parse: 'full',
  subject: 's',
};
const long = (n: number) => '€'.repeat(n);

describe('fitMetadata', () => {
  it('leaves ordinary metadata as it is', () => {
    expect(fitMetadata(base)).toBe(base);
  });

  it('cuts a hostile message (hundreds of long addresses and attachment names) under the budget, and says so', () => {
    const hostile: MessageMetadata = {
      ...base,
      to: Array.from({ length: 100 }, () => ({ name: long(256), address: `${long(200)}@x.test` })),
      cc: Array.from({ length: 100 }, () => ({ name: long(256), address: `${long(200)}@x.test` })),
      attachments: Array.from({ length: 100 }, () => ({ filename: long(256), mimeType: long(256), size: 1 })),
      hasAttachments: true,
    };
    expect(Buffer.byteLength(JSON.stringify(hostile))).toBeGreaterThan(400 * 1024);
    const fitted = fitMetadata(hostile);
    expect(Buffer.byteLength(JSON.stringify(fitted))).toBeLessThanOrEqual(64 * 1024);
    expect(fitted).toMatchObject({ truncated: true, hasAttachments: true, subject: 's' });
    expect(fitted.to.length).toBeGreaterThan(0);
  });
});
