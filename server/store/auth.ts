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
        User.find({}, { passwordHash: 0 }).sort({ createdAt: -1 }).skip(page.skip).limit(page.limit).lean(),
        User.countDocuments({}),
      ]);
      return { items, total };
    },

    updateProfile: (id: string, changes: { name?: string; organisation?: string }) =>
      User.findByIdAndUpdate(id, { $set: changes }, { new: true, runValidators: true }).lean(),

    /** Active investigators and admins by name (users are a small collection). */
    staff: () =>
      User.find({ role: { $in: ['investigator', 'admin'] }, disabled: { $ne: true } }, { name: 1, role: 1 }).sort({ name: 1 }).limit(500).lean(),

    /** Names (and e-mail, role) of these users, for pages that show who did what. */
    people: (ids: readonly string[]) => usersByIds(ids, { name: 1, email: 1, role: 1 }),

    // ----- sessions -----

    insertSession: (session: { _id: string; userId: unknown; createdAt: Date; expiresAt: Date }) => Session.create(session),
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
