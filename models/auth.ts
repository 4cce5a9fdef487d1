import mongoose, { Schema, type InferSchemaType } from 'mongoose';
import { API_KEY_SCOPES, ROLES } from '../server/domain/auth';

export { API_KEY_SCOPES, ROLES, type ApiKeyScope, type Role } from '../server/domain/auth';

const userSchema = new Schema(
  {
    email: { type: String, required: true, lowercase: true, trim: true, maxlength: 254 },
    passwordHash: { type: String, required: true },
    role: { type: String, enum: ROLES, required: true },
    name: { type: String, required: true, trim: true, maxlength: 120 },
    organisation: { type: String, trim: true, maxlength: 200, default: '' },
    disabled: { type: Boolean, default: false },
    createdAt: { type: Date, required: true },
    lastLoginAt: { type: Date, default: null },
    /**
     * Set while a self-service account waits for its e-mail to be confirmed (absent on
     * accounts made by an admin, and on those made before confirmation existed): the
     * one-time link's secret as a SHA-256 (the link is `<userId>.<secret>`), and its expiry.
     */
    confirmation: {
      type: new Schema({ tokenHash: { type: String, required: true }, expiresAt: { type: Date, required: true } }, { _id: false }),
      default: null,
    },
    confirmedAt: { type: Date, default: null },
    /** A pending password reset: the one-time link's secret as a SHA-256, and its expiry. */
    passwordReset: {
      type: new Schema({ tokenHash: { type: String, required: true }, expiresAt: { type: Date, required: true } }, { _id: false }),
      default: null,
    },
    /**
     * Sessions carry the generation they were made in and end when it moves on (a password
     * change or reset, a disabled account, a second factor reset): the user is read on every
     * request anyway, so this ends them at once, on every instance, without a scan.
     */
    sessionGeneration: { type: Number, default: 0 },
    /** Which e-mails a staff member wants, and the day whose deadline digest they last got (one a day). */
    notifications: {
      type: new Schema(
        {
          caseAssigned: { type: Boolean, default: true },
          deadlineDigest: { type: Boolean, default: true },
          digestSentFor: { type: String, default: '' },
        },
        { _id: false },
      ),
      default: () => ({}),
    },
    /** TOTP (RFC 6238) second factor; `secret` is set once an enrolment is confirmed by a code. */
    twoFactor: {
      type: new Schema(
        {
          secret: { type: String, default: null },
          /** Shown while enrolling, until the first code proves the authenticator has it. */
          pendingSecret: { type: String, default: null },
          enabledAt: { type: Date, default: null },
          /** The last time step accepted: a code is never accepted twice (replay). */
          lastStep: { type: Number, default: 0 },
          /** SHA-256 of each unused recovery code; a used one is pulled. */
          recoveryCodeHashes: { type: [String], default: [] },
        },
        { _id: false },
      ),
      default: () => ({}),
    },
  },
  { versionKey: false },
);

// Users are a small collection; the unique index is what prevents duplicate sign-ups
// under concurrent requests.
userSchema.index({ email: 1 }, { unique: true });

export type UserFields = InferSchemaType<typeof userSchema>;
export const User = mongoose.model('User', userSchema);
export type UserDoc = InstanceType<typeof User>;

/**
 * A server-side session, keyed by the JWT's `jti`: every authenticated request is one `_id`
 * lookup, and logging out really ends the session instead of waiting for the token to expire.
 */
const sessionSchema = new Schema(
  {
    _id: { type: String, required: true },
    userId: { type: Schema.Types.ObjectId, ref: 'User', required: true },
    createdAt: { type: Date, required: true },
    expiresAt: { type: Date, required: true },
    /** The user's `sessionGeneration` when the session began. */
    generation: { type: Number, default: 0 },
  },
  { versionKey: false },
);
// The embedded engine has no TTL indexes: expired sessions are refused on read and purged by
// the auth service (see purgeExpiredSessions).
sessionSchema.index({ expiresAt: 1 });

export const Session = mongoose.model('Session', sessionSchema);

/**
 * A per-client API key for update servers and devices. `_id` is the public key id carried in
 * the key itself (`dsk_<id>_<secret>`), so authenticating is one `_id` lookup; only the
 * SHA-256 of the 256-bit random secret is stored (a slow hash adds nothing at that entropy).
 */
const apiKeySchema = new Schema(
  {
    _id: { type: String, required: true },
    name: { type: String, required: true, trim: true, maxlength: 120 },
    secretHash: { type: String, required: true },
    scopes: { type: [String], enum: API_KEY_SCOPES, default: [] },
    createdByUserId: { type: Schema.Types.ObjectId, ref: 'User', default: null },
    createdAt: { type: Date, required: true },
    revokedAt: { type: Date, default: null },
    /** Refreshed at most once a minute, so a busy key does not write on every request. */
    lastUsedAt: { type: Date, default: null },
  },
  { versionKey: false },
);
apiKeySchema.index({ createdAt: -1 });

export const ApiKey = mongoose.model('ApiKey', apiKeySchema);
export type ApiKeyDoc = InstanceType<typeof ApiKey>;
