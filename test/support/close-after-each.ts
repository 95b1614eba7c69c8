/**
 * For the tests of the block it is called in: `track(server)` hands the server back and closes it after the test,
 * passed or failed (the scripted fakes of fake-imap-server.ts and fake-pop3-server.ts; closing one twice is
 * harmless).
 */
export function closeAfterEach(): <T extends { close(): Promise<void> }>(server: T) => T {
  let open: Array<{ close(): Promise<void> }> = [];
  afterEach(async () => {
    const closing = open;
    open = [];
    for (const server of closing) await server.close();
  });
  return (server) => {
    open.push(server);
    return server;
  };
}
