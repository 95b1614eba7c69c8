import type { ImapFlow } from 'imapflow';
import type { ImapSession } from '../../functions/core/ports';

/**
 * Every command the session's imapflow client sends from now on, rendered as on the wire (tag omitted, sections
 * kept: `UID FETCH 7 (UID BODY.PEEK[HEADER])`). The list grows as the session talks; empty it to start again.
 */
export function recordWire(session: ImapSession): string[] {
  const client = (session as unknown as { client: ImapFlow }).client;
  const lines: string[] = [];
  const render = (a: unknown): string => {
    if (Array.isArray(a)) return `(${a.map(render).join(' ')})`;
    if (a && typeof a === 'object' && 'value' in a) {
      const section = (a as { section?: unknown[] }).section;
      return section ? `${String(a.value)}[${section.map(render).join(' ')}]` : String(a.value);
    }
    return String(a);
  };
  const target = client as unknown as { exec: (...args: unknown[]) => unknown };
  const original = target.exec.bind(client);
  jest.spyOn(target, 'exec').mockImplementation((...args: unknown[]) => {
    const [command, attributes] = args as [string, unknown];
    lines.push([command, ...(Array.isArray(attributes) ? attributes.map(render) : [])].join(' '));
    return original(...args);
  });
  return lines;
}
