import fs from 'node:fs/promises';
import path from 'node:path';
import type { Config } from '../../config';
import { NotFoundError } from '../../errors';
import type { Page } from '../../middleware/validate';
import { outboxDir } from './mail';

/**
 * The mails written to `DATA_DIR/outbox` when no SMTP server is configured, for admins to read
 * at /admin/outbox: a trial set-up's sign-up links and notices are not lost.
 */

export interface OutboxMessage {
  /** The file name: sortable by the time it was written. */
  id: string;
  to: string;
  subject: string;
  date: string;
  text: string;
}

const FILE_NAME = /^[0-9TZ-]+-[0-9a-f]{12}\.eml$/;

/** Quoted-printable as nodemailer writes long or non-ASCII lines: soft breaks and =XX bytes. */
const unQuote = (body: string) =>
  Buffer.from(body.replace(/=\r?\n/g, '').replace(/=([0-9A-F]{2})/g, (_m, hex: string) => String.fromCharCode(parseInt(hex, 16))), 'latin1').toString('utf8');

/** RFC 2047 encoded words (`=?UTF-8?Q?...?=`, `=?UTF-8?B?...?=`) in a header. */
const decodeWords = (value: string) =>
  value.replace(/=\?utf-8\?([QB])\?([^?]*)\?=\s*/gi, (_m, enc: string, data: string) =>
    enc.toUpperCase() === 'B' ? Buffer.from(data, 'base64').toString('utf8') : unQuote(data.replace(/_/g, ' ')),
  );

function parse(id: string, raw: string): OutboxMessage {
  const split = raw.search(/\r?\n\r?\n/);
  const headers = raw.slice(0, split).replace(/\r?\n[ \t]+/g, ' ');
  const header = (key: string) => decodeWords(new RegExp(`^${key}: (.*)$`, 'mi').exec(headers)?.[1]?.trim() ?? '');
  const body = raw.slice(split).replace(/^\r?\n\r?\n/, '');
  const encoding = header('Content-Transfer-Encoding').toLowerCase();
  const text = encoding === 'quoted-printable' ? unQuote(body) : encoding === 'base64' ? Buffer.from(body, 'base64').toString('utf8') : body;
  const written = new Date(header('Date'));
  return { id, to: header('To'), subject: header('Subject'), date: Number.isNaN(written.getTime()) ? header('Date') : `${written.toISOString().slice(0, 16).replace('T', ' ')} UTC`, text };
}

export function outboxFolder(config: Pick<Config, 'dataDir' | 'mail'>) {
  const dir = outboxDir(config);

  return {
    /** Whether mail goes to the folder at all (no SMTP_URL). */
    inUse: !config.mail.smtpUrl,

    /** Newest first, one page. */
    async list(page: Page): Promise<{ items: OutboxMessage[]; total: number }> {
      const names = (await fs.readdir(dir).catch(() => [] as string[])).filter((n) => FILE_NAME.test(n)).sort().reverse();
      const items = await Promise.all(names.slice(page.skip, page.skip + page.limit).map(async (name) => parse(name, await fs.readFile(path.join(dir, name), 'utf8'))));
      return { items, total: names.length };
    },

    async message(id: string): Promise<OutboxMessage> {
      // The name is checked before it touches the file system: no path can be read through it.
      if (!FILE_NAME.test(id)) throw new NotFoundError('No such message.');
      const raw = await fs.readFile(path.join(dir, id), 'utf8').catch(() => null);
      if (raw === null) throw new NotFoundError('No such message.');
      return parse(id, raw);
    },
  };
}
