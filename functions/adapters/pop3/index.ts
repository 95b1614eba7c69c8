/**
 * The POP3 adapter: `openPop3Session` is `MailConnector.openPop3`. node-pop3 runs the conversation; message
 * bytes come from our own reader, byte-exact and dot-unstuffed, whatever the TCP chunking.
 */
export { openPop3Session } from './session';
