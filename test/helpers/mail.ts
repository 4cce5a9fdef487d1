import fs from 'node:fs';
import path from 'node:path';
import type { AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { outboxDir } from '../../server/services/notifications';
import type { Config } from '../../server/config';

/** A test app, or a spawned server's data directory: `{ config: { dataDir } }`. */
type WithDataDir = { config: Pick<Config, 'dataDir'> };

export interface OutboxMail {
  file: string;
  to: string;
  subject: string;
  text: string;
}

/** Quoted-printable as nodemailer writes long lines: soft breaks and =XX bytes. */
const unQuote = (body: string) => Buffer.from(body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString('utf8');

/** Every message the app wrote to DATA_DIR/outbox (no SMTP_URL), oldest first. */
export function outbox(ctx: WithDataDir): OutboxMail[] {
  const dir = outboxDir(ctx.config);
  if (!fs.existsSync(dir)) return [];
  return fs
    .readdirSync(dir)
    .filter((f) => f.endsWith('.eml'))
    .sort()
    .map((name) => {
      const file = path.join(dir, name);
      const raw = fs.readFileSync(file, 'utf8');
      const split = raw.indexOf('\n\n');
      const headers = raw.slice(0, split);
      const header = (key: string) => new RegExp(`^${key}: (.*)$`, 'mi').exec(headers)?.[1]?.trim() ?? '';
      const body = raw.slice(split + 2);
      return { file, to: header('To'), subject: header('Subject'), text: /quoted-printable/i.test(headers) ? unQuote(body) : body };
    });
}

/** The messages to one address. */
export const mailTo = (ctx: WithDataDir, address: string) => outbox(ctx).filter((m) => m.to.toLowerCase().includes(address.toLowerCase()));

/** The token of the latest confirmation link sent to `address`. */
export function confirmationTokenFor(ctx: WithDataDir, address: string): string {
  const link = mailTo(ctx, address)
    .map((m) => /\/signup\/confirm\?token=(\S+)/.exec(m.text)?.[1])
    .filter(Boolean)
    .at(-1);
  if (!link) throw new Error(`no confirmation link sent to ${address}`);
  return link;
}

/** A message the in-test SMTP server received: envelope recipients, subject and text. */
export interface ReceivedMail {
  to: string[];
  subject: string;
  text: string;
}

/**
 * A real SMTP server inside the test process (the `smtp-server` package); start a test app
 * with `SMTP_URL: server.url`. `to(address)` lists what that address received, oldest first.
 */
export async function startMailServer() {
  const received: ReceivedMail[] = [];
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, session, done) {
      let data = '';
      stream.on('data', (chunk: Buffer) => (data += chunk.toString('utf8')));
      stream.on('end', () => {
        const split = data.search(/\r?\n\r?\n/);
        const headers = data.slice(0, split).replace(/\r?\n[ \t]+/g, ' ');
        const body = data.slice(split).replace(/^\r?\n\r?\n/, '').replace(/\r\n/g, '\n');
        const subject = /^Subject: (.*)$/im.exec(headers)?.[1]?.trim() ?? '';
        received.push({ to: session.envelope.rcptTo.map((r) => r.address.toLowerCase()), subject, text: /quoted-printable/i.test(headers) ? unQuote(body) : body });
        done();
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    received,
    to: (address: string) => received.filter((m) => m.to.includes(address.toLowerCase())),
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
