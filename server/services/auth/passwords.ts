import crypto from 'node:crypto';
import { hash } from '@node-rs/argon2';

// argon2id with OWASP's minimum parameters (19 MiB, 2 passes): ~30 ms here.
const ARGON2_OPTIONS = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export const hashPassword = (password: string) => hash(password, ARGON2_OPTIONS);

/** One-time link secrets are 256 random bits: a fast hash is enough to store them. */
export const sha256Hex = (secret: string) => crypto.createHash('sha256').update(secret).digest('hex');
