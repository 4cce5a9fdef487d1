import crypto from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import nodemailer from 'nodemailer';
import type { Clock } from '../../clock';
import type { Config } from '../../config';
import type { Logger } from '../../logger';

/**
 * Sending one e-mail: through SMTP when `SMTP_URL` is set, otherwise written as an .eml file
 * to `DATA_DIR/outbox` (readable by the portal's account only; admins read it at /admin/outbox).
 * Callers never put a reporter's data in a message.
 */

export interface Mail {
  to: string;
  subject: string;
  text: string;
  /**
   * The recipient is a reporter, whose address is kept only sealed with the report: without
   * SMTP, the outbox file names no recipient, so the address never lands in DATA_DIR in clear.
   */
  sealedRecipient?: boolean;
}

/** What an outbox copy shows instead of a sealed recipient (a reserved, undeliverable domain). */
export const SEALED_RECIPIENT = 'reporter-address-sealed@downstream.invalid';

export function outboxDir(config: Pick<Config, 'dataDir'>) {
  return path.join(config.dataDir, 'outbox');
}

export function mailSender(deps: { config: Config; clock: Clock; logger: Logger }) {
  const { config, clock, logger } = deps;
  const smtp = config.mail.smtpUrl;
  const transport = smtp ? nodemailer.createTransport(smtp) : nodemailer.createTransport({ streamTransport: true, buffer: true, newline: 'unix' });

  async function toOutbox(message: Buffer, at: Date) {
    const dir = outboxDir(config);
    await fs.mkdir(dir, { recursive: true, mode: 0o700 });
    // Sortable by time, unique across instances writing to one DATA_DIR.
    const name = `${at.toISOString().replace(/[:.]/g, '-')}-${crypto.randomBytes(6).toString('hex')}.eml`;
    await fs.writeFile(path.join(dir, name), message, { mode: 0o600, flag: 'wx' });
  }

  return {
    /**
     * Sends one message. Never throws: a mail server that is down must not change what the
     * sender's caller answers (sign-up and registration answer the same whatever happens to
     * the notice), so a failure is logged, without the message, and reported as `false`.
     */
    async sendMail(mail: Mail): Promise<boolean> {
      const at = clock.now();
      try {
        const to = !smtp && mail.sealedRecipient ? SEALED_RECIPIENT : mail.to;
        const info = await transport.sendMail({ from: config.mail.from, to, subject: mail.subject, text: mail.text, date: at });
        if (!smtp) await toOutbox(info.message as Buffer, at);
        return true;
      } catch (err) {
        logger.error({ err: (err as Error).message, subject: mail.subject }, 'mail not sent');
        return false;
      }
    },
  };
}

export type MailSender = ReturnType<typeof mailSender>;
