import { openImapSession } from '../adapters/imap/imap-session';
import { openPop3Session } from '../adapters/pop3';
import type { Logger, MailConnector } from '../core/ports';

/**
 * The mail protocols' adapters behind one port. Its own module so that a Lambda bundle that needs it does not also
 * pull in the local mode's process management (functions/local), which only the CLI's runtime uses.
 */
export function makeConnector(logger?: Logger): MailConnector {
  return {
    openImap: (source, password, options) => openImapSession(source, password, { ...options, logger }),
    openPop3: (source, password, options) => openPop3Session(source, password, options),
  };
}
