import fs from 'node:fs';
import path from 'node:path';
import { ConfigError } from '../config';

/**
 * DATA_DIR holds contacts, messages, evidence and password hashes: only the account that runs
 * Downstream may read it (issue 20, finding 10). From here on this process creates
 * directories 0700 and files 0600, whatever umask it was started with; FerretDB inherits the
 * umask and sets the same one itself (tools/ferretdb/main.go).
 */
export function restrictDataDir(dataDir: string): void {
  process.umask(0o077);
  try {
    fs.mkdirSync(dataDir, { recursive: true, mode: 0o700 });
  } catch (err) {
    throw new ConfigError([`DATA_DIR: ${dataDir} cannot be used (${(err as Error).message}); give a writable directory`]);
  }
}

/** Enough to find a loosened directory or database file; uploads beyond this are not walked at start. */
const MAX_CHECKED = 10_000;

/** The first entry under `dataDir` (itself included) that group or others may use, or null. */
export function firstLooseEntry(dataDir: string): { path: string; mode: string } | null {
  const pending = [dataDir];
  for (let checked = 0; pending.length && checked < MAX_CHECKED; checked++) {
    const entry = pending.shift()!;
    let stat: fs.Stats;
    try {
      stat = fs.lstatSync(entry);
    } catch {
      continue; // removed meanwhile
    }
    if (stat.isSymbolicLink()) continue;
    if (stat.mode & 0o077) return { path: entry, mode: (stat.mode & 0o7777).toString(8).padStart(4, '0') };
    if (stat.isDirectory()) {
      try {
        for (const name of fs.readdirSync(entry)) pending.push(path.join(entry, name));
      } catch {
        // unreadable to us: nothing more to check there
      }
    }
  }
  return null;
}
