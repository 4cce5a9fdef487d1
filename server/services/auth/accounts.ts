import crypto from 'node:crypto';
import { verify } from '@node-rs/argon2';
import type { Clock } from '../../clock';
import type { Config } from '../../config';
import { BadRequestError, ConflictError, ValidationError } from '../../errors';
import type { AuthStore, StoredUser } from '../../store/auth';
import type { AuditService } from '../audit';
import type { NotificationsService } from '../notifications';
import { hashPassword, sha256Hex } from './passwords';

/** How long a password reset link works. */
export const RESET_HOURS = 24;
/** `<userId>.<secret>`, like a confirmation link: found by `_id`, the secret checked by its hash. */
const RESET_TOKEN = /^([a-f0-9]{24})\.([A-Za-z0-9_-]{43})$/;

export const INVALID_RESET = 'This reset link is not valid, was already used or has expired. Ask for a new one.';
export const WRONG_CURRENT_PASSWORD = 'Your current password is not correct.';

/**
 * Password change and reset, and what an admin does to an account: disable, enable, reset
 * its second factor, send a reset link. Each ends the account's sessions where it should
 * (the session generation moves on), on every instance at once.
 */
export function createAccountFunctions(deps: {
  config: Config;
  clock: Clock;
  audit: AuditService;
  notifications: NotificationsService;
  store: AuthStore;
  getUser: (id: string) => Promise<StoredUser>;
  issueSession: (user: Pick<StoredUser, '_id' | 'sessionGeneration'>) => Promise<{ token: string; expiresAt: Date }>;
}) {
  const { config, clock, audit, notifications, store } = deps;

  const adminAction = (adminId: string, action: string, userId: string, detail?: Record<string, unknown>) =>
    audit.record({ actorKind: 'user', actorId: adminId, action, subjectKind: 'user', subjectId: userId, ...(detail ? { detail } : {}) });

  /** A new one-time reset link for the account (the previous one stops working). */
  async function newResetLink(user: Pick<StoredUser, '_id'>) {
    const secret = crypto.randomBytes(32).toString('base64url');
    await store.setPasswordReset(user._id, { tokenHash: sha256Hex(secret), expiresAt: new Date(clock.now().getTime() + RESET_HOURS * 3_600_000) });
    return `${config.mail.publicUrl}/password/reset?token=${String(user._id)}.${secret}`;
  }

  const mailResetLink = (user: Pick<StoredUser, 'email' | 'name'>, link: string) =>
    notifications.sendMail({
      to: user.email,
      subject: 'Reset your Downstream password',
      text: [
        `Hello ${user.name},`,
        '',
        'To choose a new password for your Downstream account, open this link:',
        link,
        '',
        `The link works once, for ${RESET_HOURS} hours. If you did not ask for it, ignore this e-mail: your password stays as it is.`,
      ].join('\n'),
    });

  return {
    /**
     * Changes the signed-in user's password after checking the current one. Every other
     * session ends; the caller gets a new session for this browser.
     */
    async changePassword(userId: string, currentPassword: string, newPassword: string) {
      const user = await deps.getUser(userId);
      if (!(await verify(user.passwordHash, currentPassword).catch(() => false))) throw new ValidationError({ currentPassword: WRONG_CURRENT_PASSWORD }, WRONG_CURRENT_PASSWORD);
      const changed = await store.setPassword(userId, await hashPassword(newPassword));
      if (!changed) throw new ConflictError('Your account changed meanwhile. Please sign in again.');
      await audit.record({ actorKind: 'user', actorId: userId, action: 'account.password-changed', subjectKind: 'user', subjectId: userId });
      return deps.issueSession(changed);
    },

    /**
     * "Forgot my password": a link by e-mail when the address has an active account. The
     * caller answers the same either way (no account enumeration).
     */
    async requestPasswordReset(email: string) {
      const user = await store.userByEmail(email.trim().toLowerCase());
      if (!user || user.disabled || user.confirmation) return;
      await mailResetLink(user, await newResetLink(user));
    },

    /** An admin's reset of an account's password: the link, shown to the admin and e-mailed to the holder. */
    async adminPasswordReset(adminId: string, userId: string) {
      const user = await deps.getUser(userId);
      const link = await newResetLink(user);
      await mailResetLink(user, link);
      await adminAction(adminId, 'account.password-reset-issued', userId);
      return { user, link, expiresAt: new Date(clock.now().getTime() + RESET_HOURS * 3_600_000) };
    },

    /** Follows a reset link: the new password is set, the link is used up and every session ends. */
    async resetPassword(token: string, newPassword: string) {
      const match = RESET_TOKEN.exec(token.trim());
      const user = match ? await store.resetPassword(match[1]!, sha256Hex(match[2]!), await hashPassword(newPassword), clock.now()) : null;
      if (!user) throw new BadRequestError(INVALID_RESET, { token: INVALID_RESET }, 'invalid_reset');
      await audit.record({ actorKind: 'user', actorId: String(user._id), action: 'account.password-reset', subjectKind: 'user', subjectId: String(user._id) });
      return user;
    },

    /** Disables (its sessions end at once) or re-enables an account. An admin cannot disable their own. */
    async setAccountDisabled(adminId: string, userId: string, disabled: boolean) {
      if (disabled && adminId === userId) throw new ConflictError('You cannot disable your own account.');
      const user = await deps.getUser(userId);
      if (await store.setDisabled(userId, disabled)) await adminAction(adminId, disabled ? 'account.disabled' : 'account.enabled', userId);
      return { ...user, disabled };
    },

    /** Removes an account's second factor (a lost phone): it enrols again at its next sign-in. */
    async resetTwoFactor(adminId: string, userId: string) {
      const user = await deps.getUser(userId);
      await store.clearTwoFactor(userId);
      await adminAction(adminId, 'account.two-factor-reset', userId);
      return user;
    },
  };
}
