import tls from 'node:tls';
import type { Source } from '../../core/model';

/**
 * Certificate checks stay on; a source's `ca` (its private CA, "caFile") adds to the system roots rather than
 * replacing them. The part of every upstream TLS connection's options that decides whom we trust.
 */
export function trustOptions(
  source: Pick<Source, 'ca'>,
): Pick<tls.ConnectionOptions, 'ca' | 'rejectUnauthorized'> {
  return {
    rejectUnauthorized: true,
    ...(source.ca ? { ca: [...tls.rootCertificates, source.ca] } : {}),
  };
}
