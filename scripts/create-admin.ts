/**
 * Creates the first admin (or any admin later):
 *   npm run create-admin -- --email ada@example.org [--name "Ada Admin"]
 * The password is read from standard input (piped) or asked for at the prompt, never taken
 * from the command line, where it would land in shell history.
 */
import readline from 'node:readline';
import { parseArgs } from 'node:util';
import { z } from 'zod';
import { systemClock } from '../server/clock';
import { loadConfig } from '../server/config';
import { connectDatabase } from '../server/db';
import { HttpError } from '../server/errors';
import { createLogger } from '../server/logger';
import { email as emailSchema, password as passwordSchema } from '../server/middleware/validate';
import { createServices } from '../server/services';
import { createStores } from '../server/store';

async function readPassword(): Promise<string> {
  const rl = readline.createInterface({ input: process.stdin, output: process.stdout, terminal: process.stdin.isTTY });
  if (process.stdin.isTTY) {
    // Hide the typed characters.
    const write = (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput;
    process.stdout.write('Password (at least 12 characters): ');
    (rl as unknown as { _writeToOutput: (s: string) => void })._writeToOutput = (s: string) => {
      if (s.includes('\n')) write.call(rl, '\n');
    };
  }
  const line = await new Promise<string>((resolve) => rl.once('line', resolve).once('close', () => resolve('')));
  rl.close();
  return line.replace(/\r$/, '');
}

async function main() {
  const { values } = parseArgs({ options: { email: { type: 'string' }, name: { type: 'string' } } });
  const email = emailSchema.safeParse(values.email ?? '');
  if (!email.success) throw new Error('Usage: npm run create-admin -- --email you@example.org [--name "Your Name"]');
  const password = passwordSchema.safeParse(await readPassword());
  if (!password.success) throw new Error(`Password: ${password.error.issues[0]?.message}`);
  const name = z.string().trim().min(1).max(120).catch('Administrator').parse(values.name);

  const config = loadConfig();
  const logger = createLogger('warn');
  const db = await connectDatabase(config, logger);
  try {
    const services = createServices({ config, clock: systemClock, logger, stores: createStores(db.engine) });
    const user = await services.auth.createUser({ email: email.data, password: password.data, name }, 'admin');
    await services.audit.record({ actorKind: 'system', action: 'user.created', subjectKind: 'user', subjectId: String(user._id), detail: { role: 'admin', via: 'create-admin' } });
    process.stdout.write(`Admin account created: ${user.email}\n`);
  } finally {
    await db.close();
  }
}

main().catch((err: unknown) => {
  const message = err instanceof HttpError && err.fields ? Object.values(err.fields).join(' ') : (err as Error).message;
  process.stderr.write(`create-admin: ${message}\n`);
  process.exit(1);
});
