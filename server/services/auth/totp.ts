import crypto from 'node:crypto';
import { generateSecret, type Base32Plugin, type CryptoPlugin } from '@otplib/core';
import { verify } from '@otplib/totp';
import { generateTOTP } from '@otplib/uri';

/**
 * otplib's TOTP with node:crypto and an RFC 4648 base32 codec as its plugins. otplib's own
 * entry point loads its default plugins, which are ES modules only: Jest (CommonJS) cannot
 * load them, and node:crypto is what the rest of the app trusts anyway.
 */

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

const base32: Base32Plugin = {
  name: 'rfc4648',
  encode(data) {
    let bits = 0;
    let value = 0;
    let out = '';
    for (const byte of data) {
      value = (value << 8) | byte;
      bits += 8;
      while (bits >= 5) {
        out += BASE32[(value >>> (bits - 5)) & 31];
        bits -= 5;
      }
    }
    if (bits > 0) out += BASE32[(value << (5 - bits)) & 31];
    return out;
  },
  decode(text) {
    const clean = text.toUpperCase().replace(/[\s=]/g, '');
    const bytes: number[] = [];
    let bits = 0;
    let value = 0;
    for (const char of clean) {
      const index = BASE32.indexOf(char);
      if (index < 0) throw new Error('not base32');
      value = (value << 5) | index;
      bits += 5;
      if (bits >= 8) {
        bytes.push((value >>> (bits - 8)) & 255);
        bits -= 8;
      }
    }
    return Uint8Array.from(bytes);
  },
};

const nodeCrypto: CryptoPlugin = {
  name: 'node',
  hmac: (algorithm, key, data) => new Uint8Array(crypto.createHmac(algorithm, key).update(data).digest()),
  randomBytes: (length) => new Uint8Array(crypto.randomBytes(length)),
  constantTimeEqual: (a, b) => {
    const x = Buffer.from(a);
    const y = Buffer.from(b);
    return x.length === y.length && crypto.timingSafeEqual(x, y);
  },
};

/** A new 160-bit secret, base32 as authenticator apps expect. */
export const newTotpSecret = () => generateSecret({ crypto: nodeCrypto, base32 });

/** The `otpauth://` URI an authenticator app scans. */
export const totpUri = (issuer: string, label: string, secret: string) => generateTOTP({ issuer, label, secret });

/** The time step a code matched (within `toleranceSeconds` of `epochSeconds`, after `afterStep`), or null. */
export async function totpStep(secret: string, code: string, epochSeconds: number, toleranceSeconds: number, afterStep: number): Promise<number | null> {
  const result = await verify({ secret, token: code, epoch: epochSeconds, epochTolerance: toleranceSeconds, afterTimeStep: afterStep, crypto: nodeCrypto, base32 });
  return result.valid ? result.timeStep : null;
}
