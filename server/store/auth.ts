import { ApiKey, Session, User } from '../../models/auth';
import { isUserId, type ApiKeyScope, type Role } from '../domain/auth';
import { type Engine, isDuplicateKey } from './engine';


export type UserDoc = InstanceType<typeof User>;
export type ApiKeyDoc = InstanceType<typeof ApiKey>;
/** A pending e-mail confirmation as stored: the link secret's hash and its expiry. */
export interface Confirmation {
  tokenHash: string;
  expiresAt: Date;
}

/** Users, sessions and API keys: small collections, read by `_id` on every request. */
/** What a notice to a staff member needs of their account. */
const NOTICE_FIELDS = { name: 1, email: 1, role: 1, disabled: 1, notifications: 1 } as const;

export function createAuthStore(engine: Engine) {
  /** Users by id, in no particular order: one `$in` on MongoDB, `_id` reads on FerretDB. */
  async function usersByIds(ids: readonly string[], fields: Record<string, 1>) {
    const valid = [...new Set(ids.filter(isUserId))];
    if (!valid.length) return [];
    if (engine.secondaryIndexes) return User.find({ _id: { $in: valid } }, fields).lean();
    return (await Promise.all(valid.map((id) => User.findById(id, fields).lean()))).filter((u) => u !== null);
  }

  return {
    /** Null when the e-mail is taken (the unique index decides, also under concurrent sign-ups). */
    async insertUser(user: { email: string; passwordHash: string; role: Role; name: string; organisation: string; createdAt: Date; confirmation?: Confirmation | null; confirmedAt?: Date | null }): Promise<UserDoc | null> {
      try {
        return await User.create(user);
      } catch (err) {
        if (isDuplicateKey(err)) return null;
        throw err;
      }
    },

    userByEmail: (email: string) => User.findOne({ email }),

    /**
     * A new sign-up of an account still waiting for confirmation: the latest sign-up's
     * password and name, and a new link (the earlier one stops working). Guarded by the
     * account still being unconfirmed, so a confirmed account is never changed this way.
     */
    async renewConfirmation(userId: unknown, confirmation: Confirmation, details: { passwordHash: string; name: string; organisation: string }): Promise<boolean> {
      const res = await User.updateOne({ _id: userId, confirmation: { $ne: null } }, { $set: { confirmation, ...details } });
      return res.modifiedCount === 1;
    },

    /** Consumes a confirmation link: one guarded write, so a link confirms once and only before it expires. */
    async confirmUser(userId: string, tokenHash: string, now: Date) {
      if (!isUserId(userId)) return null;
      return User.findOneAndUpdate(
        { _id: userId, 'confirmation.tokenHash': tokenHash, 'confirmation.expiresAt': { $gt: now } },
        { $set: { confirmation: null, confirmedAt: now } },
        { new: true },
      ).lean();
    },

    userById: async (id: string) => (isUserId(id) ? User.findById(id).lean() : null),

    setLastLogin: (userId: unknown, at: Date) => User.updateOne({ _id: userId }, { $set: { lastLoginAt: at } }),

    async listUsers(page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([
        User.find({}, { passwordHash: 0, passwordReset: 0, 'twoFactor.secret': 0, 'twoFactor.pendingSecret': 0, 'twoFactor.recoveryCodeHashes': 0 }).sort({ createdAt: -1 }).skip(page.skip).limit(page.limit).lean(),
        User.countDocuments({}),
      ]);
      return { items, total };
    },

    updateProfile: (id: string, changes: { name?: string; organisation?: string }) =>
      User.findByIdAndUpdate(id, { $set: changes }, { new: true, runValidators: true }).lean(),

    /** Enables or disables an account (disabling ends its sessions); false when it already was so. */
    async setDisabled(userId: string, disabled: boolean): Promise<boolean> {
      if (!isUserId(userId)) return false;
      const res = await User.updateOne({ _id: userId, disabled: !disabled }, { $set: { disabled }, ...(disabled ? { $inc: { sessionGeneration: 1 } } : {}) });
      return res.modifiedCount === 1;
    },

    /** A new password; every session of the account ends. The account as it now is. */
    setPassword: (userId: string, passwordHash: string) =>
      User.findOneAndUpdate({ _id: userId }, { $set: { passwordHash, passwordReset: null }, $inc: { sessionGeneration: 1 } }, { new: true }).lean(),

    /** A new reset link for the account (an earlier one stops working). */
    setPasswordReset: (userId: unknown, passwordReset: Confirmation) => User.updateOne({ _id: userId }, { $set: { passwordReset } }),

    /** Consumes a reset link: one guarded write, so a link works once and only before it expires. */
    async resetPassword(userId: string, tokenHash: string, passwordHash: string, now: Date) {
      if (!isUserId(userId)) return null;
      return User.findOneAndUpdate(
        { _id: userId, 'passwordReset.tokenHash': tokenHash, 'passwordReset.expiresAt': { $gt: now } },
        { $set: { passwordHash, passwordReset: null }, $inc: { sessionGeneration: 1 } },
        { new: true },
      ).lean();
    },

    // ----- two-factor -----

    /** The secret being enrolled, kept until a code confirms it (reloading the page shows the same one). */
    setPendingTwoFactor: (userId: string, secret: string) => User.updateOne({ _id: userId }, { $set: { 'twoFactor.pendingSecret': secret } }),

    /** Turns on the enrolled secret, guarded by it still being the one shown. */
    async enableTwoFactor(userId: string, pendingSecret: string, change: { enabledAt: Date; lastStep: number; recoveryCodeHashes: string[] }): Promise<boolean> {
      const res = await User.updateOne(
        { _id: userId, 'twoFactor.pendingSecret': pendingSecret },
        { $set: { twoFactor: { secret: pendingSecret, pendingSecret: null, ...change } } },
      );
      return res.modifiedCount === 1;
    },

    /** Records an accepted code's time step; false when that step (or a later one) was already used. */
    async acceptTimeStep(userId: string, step: number): Promise<boolean> {
      const res = await User.updateOne({ _id: userId, 'twoFactor.lastStep': { $lt: step } }, { $set: { 'twoFactor.lastStep': step } });
      return res.modifiedCount === 1;
    },

    /** Uses up a recovery code; false when it is not (or no longer) one of the account's. */
    async useRecoveryCode(userId: string, codeHash: string): Promise<boolean> {
      const res = await User.updateOne({ _id: userId, 'twoFactor.recoveryCodeHashes': codeHash }, { $pull: { 'twoFactor.recoveryCodeHashes': codeHash } });
      return res.modifiedCount === 1;
    },

    /** Removes the second factor (an admin's reset): the account enrols again at its next sign-in. */
    async clearTwoFactor(userId: string): Promise<boolean> {
      if (!isUserId(userId)) return false;
      const res = await User.updateOne(
        { _id: userId },
        { $set: { twoFactor: { secret: null, pendingSecret: null, enabledAt: null, lastStep: 0, recoveryCodeHashes: [] } }, $inc: { sessionGeneration: 1 } },
      );
      return res.matchedCount === 1;
    },

    // ----- notification preferences -----

    setNotificationPreferences: (userId: string, prefs: { caseAssigned: boolean; deadlineDigest: boolean }) =>
      User.updateOne({ _id: userId }, { $set: { 'notifications.caseAssigned': prefs.caseAssigned, 'notifications.deadlineDigest': prefs.deadlineDigest } }),

    /** Claims `day`'s digest for this person: true for exactly one caller, on any instance. */
    async claimDigest(userId: string, day: string): Promise<boolean> {
      const res = await User.updateOne({ _id: userId, 'notifications.digestSentFor': { $ne: day } }, { $set: { 'notifications.digestSentFor': day } });
      return res.modifiedCount === 1;
    },

    /** Active staff with their e-mail and preferences, for notices (users are a small collection). */
    staffForNotices: (ids: readonly string[]) => usersByIds(ids, NOTICE_FIELDS),

    /** Active investigators with their e-mail and preferences, for notices (users are a small collection). */
    activeInvestigators: () => User.find({ role: 'investigator', disabled: { $ne: true } }, NOTICE_FIELDS).limit(1000).lean(),

    /** Active staff who may decide transfers, for notices (users are a small collection). */
    activeStaff: () => User.find({ role: { $in: ['investigator', 'admin'] }, disabled: { $ne: true } }, NOTICE_FIELDS).limit(1000).lean(),

    /** Active investigators and admins by name (users are a small collection). */
    staff: () =>
      User.find({ role: { $in: ['investigator', 'admin'] }, disabled: { $ne: true } }, { name: 1, role: 1 }).sort({ name: 1 }).limit(500).lean(),

    /** Names (and e-mail, role) of these users, for pages that show who did what. */
    people: (ids: readonly string[]) => usersByIds(ids, { name: 1, email: 1, role: 1 }),

    // ----- sessions -----

    insertSession: (session: { _id: string; userId: unknown; createdAt: Date; expiresAt: Date; generation: number }) => Session.create(session),
    sessionById: (id: string) => Session.findById(id).lean(),
    deleteSession: (id: string) => Session.deleteOne({ _id: id }),
    /** A scan of a small collection: the caller runs it rarely and never on a request path. */
    deleteSessionsExpiredBy: (now: Date) => Session.deleteMany({ expiresAt: { $lte: now } }),

    // ----- API keys -----

    insertApiKey: (key: { _id: string; name: string; secretHash: string; scopes: ApiKeyScope[]; createdByUserId: string | null; createdAt: Date }) => ApiKey.create(key),

    async listApiKeys(page: { skip: number; limit: number }) {
      const [items, total] = await Promise.all([
        ApiKey.find({}, { secretHash: 0 }).sort({ createdAt: -1 }).skip(page.skip).limit(page.limit).lean(),
        ApiKey.countDocuments({}),
      ]);
      return { items, total };
    },

    apiKeyById: (id: string) => ApiKey.findById(id).lean(),
    apiKeyWithoutSecret: (id: string) => ApiKey.findById(id, { secretHash: 0 }).lean(),

    /** Revokes once: the first revocation time stays. True when this call revoked it. */
    async revokeApiKey(id: string, at: Date): Promise<boolean> {
      const res = await ApiKey.updateOne({ _id: id, revokedAt: null }, { $set: { revokedAt: at } });
      return res.modifiedCount === 1;
    },

    touchApiKey: (id: string, at: Date) => ApiKey.updateOne({ _id: id }, { $set: { lastUsedAt: at } }),
  };
}

export type AuthStore = ReturnType<typeof createAuthStore>;
/** An account as read (a plain object). */
export type StoredUser = NonNullable<Awaited<ReturnType<AuthStore['userById']>>>;
