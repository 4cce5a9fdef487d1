import crypto from 'node:crypto';

/**
 * AES-256-GCM with Node's crypto: the one cipher of the portal's encryption at rest and of its
 * short-lived sealed cookies. A sealed value is `version (1) | iv (12) | tag (16) | ciphertext`;
 * the associated data binds it to where it belongs (a report, a field), so a sealed value
 * copied into another place does not open.
 */

const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
export const KEY_BYTES = 32;

export function seal(key: Buffer, plaintext: Buffer, associated = ''): Buffer {
  const iv = crypto.randomBytes(IV_BYTES);
  const cipher = crypto.createCipheriv('aes-256-gcm', key, iv);
  cipher.setAAD(Buffer.from(associated));
  const body = Buffer.concat([cipher.update(plaintext), cipher.final()]);
  return Buffer.concat([Buffer.from([VERSION]), iv, cipher.getAuthTag(), body]);
}

/** null when the value was not sealed with this key and associated data, or was altered. */
export function unseal(key: Buffer, sealed: Buffer, associated = ''): Buffer | null {
  if (sealed.length < 1 + IV_BYTES + TAG_BYTES || sealed[0] !== VERSION) return null;
  const decipher = crypto.createDecipheriv('aes-256-gcm', key, sealed.subarray(1, 1 + IV_BYTES));
  decipher.setAAD(Buffer.from(associated));
  decipher.setAuthTag(sealed.subarray(1 + IV_BYTES, 1 + IV_BYTES + TAG_BYTES));
  try {
    return Buffer.concat([decipher.update(sealed.subarray(1 + IV_BYTES + TAG_BYTES)), decipher.final()]);
  } catch {
    return null;
  }
}

/** A key for one purpose, derived from a secret: a key is never used for two things. */
export const deriveKey = (secret: string | Buffer, purpose: string) => Buffer.from(crypto.hkdfSync('sha256', secret, Buffer.alloc(0), purpose, KEY_BYTES));

/**
 * Sealed, expiring tokens for cookies: what they carry is neither readable nor forgeable by the
 * browser that holds them, and nothing of it is kept on the server.
 */
export function createTokenSealer(secret: string, purpose: string) {
  const key = deriveKey(secret, `downstream/token/${purpose}`);
  return {
    seal<T>(value: T, expiresAt: Date): string {
      return seal(key, Buffer.from(JSON.stringify({ v: value, exp: expiresAt.getTime() })), purpose).toString('base64url');
    },
    open<T>(token: unknown, now: Date): T | null {
      if (typeof token !== 'string' || !token || token.length > 4096) return null;
      const opened = unseal(key, Buffer.from(token, 'base64url'), purpose);
      if (!opened) return null;
      const { v, exp } = JSON.parse(opened.toString('utf8')) as { v: T; exp: number };
      return exp > now.getTime() ? v : null;
    },
  };
}
