import crypto from 'node:crypto';
import QRCode from 'qrcode';
import type { Clock } from '../../clock';
import { BadRequestError, ConflictError } from '../../errors';
import type { AuthStore, StoredUser } from '../../store/auth';
import type { AuditService } from '../audit';
import { newTotpSecret, totpStep, totpUri } from './totp';

/**
 * TOTP (RFC 6238: SHA-1, 6 digits, 30 s) for staff, with recovery codes. The secret has to be
 * readable to check codes, so it is stored as is; recovery codes are random enough (50 bits)
 * for a SHA-256 to do, behind the sign-in rate limit.
 */

/** One 30-second step either side: an authenticator whose clock is up to 30 s off still works. */
const TOLERANCE_SECONDS = 30;
const RECOVERY_CODES = 10;
const RECOVERY_ALPHABET = 'abcdefghjkmnpqrstuvwxyz23456789';

export const INVALID_CODE = 'That code is not valid. Enter the 6-digit code your authenticator app shows now, or one of your recovery codes.';

const sha256Hex = (text: string) => crypto.createHash('sha256').update(text).digest('hex');

/** `abcde-fghjk`: easy to copy from paper; compared without case, spaces or dashes. */
function newRecoveryCode() {
  const bytes = crypto.randomBytes(10);
  const chars = [...bytes].map((b) => RECOVERY_ALPHABET[b % RECOVERY_ALPHABET.length]).join('');
  return `${chars.slice(0, 5)}-${chars.slice(5)}`;
}
const normaliseRecoveryCode = (code: string) => code.toLowerCase().replace(/[\s-]/g, '');

export const hasTwoFactor = (user: Pick<StoredUser, 'twoFactor'>) => Boolean(user.twoFactor?.secret);

export function createTwoFactor(deps: { clock: Clock; audit: AuditService; store: AuthStore; issuer: string }) {
  const { clock, store } = deps;

  /** The time step of a valid code for `secret`, or null. */
  async function stepOf(secret: string, code: string, afterStep: number): Promise<number | null> {
    if (!/^\d{6}$/.test(code)) return null;
    return totpStep(secret, code, Math.floor(clock.now().getTime() / 1000), TOLERANCE_SECONDS, afterStep);
  }

  return {
    /**
     * The secret to enrol, with its QR code as a PNG data URL (rendered here, never by a third
     * party). The same secret until a code confirms it, so reloading the page does not
     * invalidate what was already scanned.
     */
    async enrolment(user: Pick<StoredUser, '_id' | 'email' | 'twoFactor'>) {
      if (hasTwoFactor(user)) throw new ConflictError('Two-factor sign-in is already set up for this account.');
      let secret = user.twoFactor?.pendingSecret ?? null;
      if (!secret) {
        secret = newTotpSecret();
        await store.setPendingTwoFactor(String(user._id), secret);
      }
      const uri = totpUri(deps.issuer, user.email, secret);
      return { secret, uri, qrDataUrl: await QRCode.toDataURL(uri, { margin: 1, width: 220 }) };
    },

    /** Confirms the enrolment with a first code; the recovery codes, shown once. */
    async confirmEnrolment(user: Pick<StoredUser, '_id' | 'twoFactor'>, code: string): Promise<string[]> {
      const pending = user.twoFactor?.pendingSecret;
      if (hasTwoFactor(user) || !pending) throw new ConflictError('There is no two-factor set-up waiting for a code. Start again from your account page.');
      const step = await stepOf(pending, code.trim(), 0);
      if (step === null) throw new BadRequestError(INVALID_CODE, { code: INVALID_CODE }, 'invalid_second_factor');
      const codes = Array.from({ length: RECOVERY_CODES }, newRecoveryCode);
      const now = clock.now();
      const enabled = await store.enableTwoFactor(String(user._id), pending, { enabledAt: now, lastStep: step, recoveryCodeHashes: codes.map((c) => sha256Hex(normaliseRecoveryCode(c))) });
      if (!enabled) throw new ConflictError('This set-up was replaced by another one. Scan the new QR code and try again.');
      await deps.audit.record({ actorKind: 'user', actorId: String(user._id), action: 'account.two-factor-enabled', subjectKind: 'user', subjectId: String(user._id) });
      return codes;
    },

    /**
     * Checks a code from the authenticator (each accepted once) or a recovery code (each
     * usable once). Which kind was used, or null.
     */
    async check(user: Pick<StoredUser, '_id' | 'twoFactor'>, code: string): Promise<'totp' | 'recovery' | null> {
      const secret = user.twoFactor?.secret;
      if (!secret) return null;
      const id = String(user._id);
      const given = code.trim();
      const step = await stepOf(secret, given, user.twoFactor?.lastStep ?? 0);
      if (step !== null) return (await store.acceptTimeStep(id, step)) ? 'totp' : null;
      const recovery = normaliseRecoveryCode(given);
      if (recovery.length !== 10 || !(await store.useRecoveryCode(id, sha256Hex(recovery)))) return null;
      await deps.audit.record({ actorKind: 'user', actorId: id, action: 'account.recovery-code-used', subjectKind: 'user', subjectId: id, detail: { left: Math.max(0, (user.twoFactor?.recoveryCodeHashes.length ?? 1) - 1) } });
      return 'recovery';
    },
  };
}
