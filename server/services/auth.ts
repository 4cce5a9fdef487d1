import crypto from 'node:crypto';
import { hash, verify } from '@node-rs/argon2';
import jwt from 'jsonwebtoken';
import type { Clock } from '../clock';
import type { Config } from '../config';
import type { AuditService } from './audit';
import type { NotificationsService } from './notifications';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError, UnauthorizedError } from '../errors';
import { isUserId, type ApiKeyScope, type Role } from '../domain/auth';
import type { Stores } from '../store';
import type { AuthStore, UserDoc } from '../store/auth';

/** What the rest of the app knows about the signed-in user. */
export interface AuthUser {
  id: string;
  email: string;
  name: string;
  role: Role;
  organisation: string;
  sessionId: string;
}

export interface NewUser {
  email: string;
  password: string;
  name: string;
  organisation?: string;
}

const JWT_ALGORITHM = 'HS256' as const;

// argon2id with OWASP's minimum parameters (19 MiB, 2 passes): ~30 ms here.
const ARGON2_OPTIONS = { memoryCost: 19_456, timeCost: 2, parallelism: 1 } as const;

export const hashPassword = (password: string) => hash(password, ARGON2_OPTIONS);

// Verified against when the e-mail is unknown, so both failures take the same time.
let dummyHash: Promise<string> | null = null;

export const INVALID_LOGIN = 'E-mail or password is incorrect.';
export const CONFIRM_FIRST = 'Confirm your e-mail address first: follow the link in the e-mail we sent when you signed up (or sign up again for a new link).';
export const INVALID_CONFIRMATION = 'This confirmation link is not valid, was already used or has expired. Sign up again to get a new one.';

/** How long a sign-up's confirmation link works. */
const CONFIRMATION_HOURS = 24;
/** `<userId>.<secret>`: the account is found by `_id`, the secret checked by its hash. */
const CONFIRMATION_TOKEN = /^([a-f0-9]{24})\.([A-Za-z0-9_-]{43})$/;

const sha256Hex = (secret: string) => crypto.createHash('sha256').update(secret).digest('hex');

export function createAuthService(deps: { config: Config; clock: Clock; audit: AuditService; notifications: NotificationsService; stores: Pick<Stores, 'auth'> }) {
  const { config, clock, notifications } = deps;
  const store = deps.stores.auth;

  async function createUser(input: NewUser, role: Role): Promise<UserDoc> {
    // An admin (or the create-admin script) vouches for the address: confirmed at once.
    const now = clock.now();
    const user = await store.insertUser({
      email: input.email,
      passwordHash: await hashPassword(input.password),
      role,
      name: input.name,
      organisation: input.organisation ?? '',
      createdAt: now,
      confirmedAt: now,
    });
    if (!user) {
      throw new ConflictError('An account with this e-mail already exists.', {
        email: 'An account with this e-mail already exists.',
      });
    }
    return user;
  }

  const apiKeys = createApiKeyFunctions(clock, deps.audit, store);
  // A key object, not the string: given a string, jsonwebtoken first tries it as a PEM public
  // key (a thrown error, stack and all) on every verify, ~1.1 ms of a timeline request's CPU
  // in the bench's profile (issue 7). The same bytes, so tokens already issued stay valid.
  const jwtKey = crypto.createSecretKey(Buffer.from(config.jwt.secret, 'utf8'));

  let lastPurge = 0;
  /** At most hourly, on login: a scan of a small collection, never on a request path. */
  async function purgeExpiredSessions(now: Date) {
    if (now.getTime() - lastPurge < 3_600_000) return;
    lastPurge = now.getTime();
    await store.deleteSessionsExpiredBy(now);
  }

  async function issueSession(user: UserDoc): Promise<{ token: string; expiresAt: Date }> {
    const now = clock.now();
    await purgeExpiredSessions(now);
    const expiresAt = new Date(now.getTime() + config.jwt.ttlMinutes * 60_000);
    const sessionId = crypto.randomBytes(24).toString('base64url');
    await store.insertSession({ _id: sessionId, userId: user._id, createdAt: now, expiresAt });
    const token = jwt.sign(
      { iat: Math.floor(now.getTime() / 1000) },
      jwtKey,
      {
        algorithm: JWT_ALGORITHM,
        expiresIn: config.jwt.ttlMinutes * 60,
        issuer: config.jwt.issuer,
        audience: config.jwt.audience,
        subject: user.id as string,
        jwtid: sessionId,
      },
    );
    return { token, expiresAt };
  }

  /** A new one-time confirmation link's secret, and what is stored of it. */
  function newConfirmation() {
    const secret = crypto.randomBytes(32).toString('base64url');
    return { secret, confirmation: { tokenHash: sha256Hex(secret), expiresAt: new Date(clock.now().getTime() + CONFIRMATION_HOURS * 3_600_000) } };
  }

  const sendConfirmationLink = (user: { _id: unknown; email: string; name: string }, secret: string) =>
    notifications.sendMail({
      to: user.email,
      subject: 'Confirm your Downstream account',
      text: [
        `Hello ${user.name},`,
        '',
        'To finish signing up for Downstream, open this link and confirm your e-mail address:',
        `${config.mail.publicUrl}/signup/confirm?token=${String(user._id)}.${secret}`,
        '',
        `The link works once, for ${CONFIRMATION_HOURS} hours. If you did not sign up, ignore this e-mail: no account is used until it is confirmed.`,
      ].join('\n'),
    });

  const sendSignUpNotice = (user: { email: string; name: string }) =>
    notifications.sendMail({
      to: user.email,
      subject: 'Someone tried to sign up with your address',
      text: [
        `Hello ${user.name},`,
        '',
        'Someone tried to create a Downstream account with your e-mail address, which already has an account.',
        `If it was you, sign in (${config.mail.publicUrl}/login) or reset your password. If it was not you, you need not do anything: your account was not changed.`,
      ].join('\n'),
    });

  /**
   * Self-service sign-up: always a customer, whatever else the form carried, and unconfirmed
   * until the link sent to the address is followed. The caller answers the same whether the
   * e-mail was new or not (no account enumeration): the account holder learns of the attempt
   * by e-mail instead. The new account, or null when the address already had one.
   */
  async function signUp(input: NewUser): Promise<UserDoc | null> {
    const details = { passwordHash: await hashPassword(input.password), name: input.name, organisation: input.organisation ?? '' };
    const { secret, confirmation } = newConfirmation();
    const user = await store.insertUser({ email: input.email, role: 'customer', createdAt: clock.now(), confirmation, ...details });
    if (user) {
      await sendConfirmationLink(user, secret);
      return user;
    }
    const existing = await store.userByEmail(input.email.trim().toLowerCase());
    if (!existing) return null; // deleted between the two reads: nothing to tell anyone
    // Still unconfirmed (a lost e-mail, an expired link): the latest sign-up gets a new link.
    if (existing.confirmation && (await store.renewConfirmation(existing._id, confirmation, details))) await sendConfirmationLink({ ...details, _id: existing._id, email: existing.email }, secret);
    else await sendSignUpNotice(existing);
    return null;
  }

  return {
    signUp,

    /** Follows a confirmation link: the account can sign in from now on. */
    async confirmEmail(token: string) {
      const match = CONFIRMATION_TOKEN.exec(token.trim());
      const user = match ? await store.confirmUser(match[1]!, sha256Hex(match[2]!), clock.now()) : null;
      if (!user) throw new BadRequestError(INVALID_CONFIRMATION, { token: INVALID_CONFIRMATION }, 'invalid_confirmation');
      await deps.audit.record({ actorKind: 'user', actorId: String(user._id), action: 'account.confirmed', subjectKind: 'user', subjectId: String(user._id) });
      return user;
    },

    /** Staff accounts are made by an admin (or the create-admin script). */
    createUser,

    issueSession,

    async logIn(email: string, password: string) {
      const user = await store.userByEmail(email.trim().toLowerCase());
      if (!user || user.disabled) {
        dummyHash ??= hashPassword(crypto.randomBytes(16).toString('hex'));
        await verify(await dummyHash, password).catch(() => false);
        throw new UnauthorizedError(INVALID_LOGIN, 'invalid_credentials');
      }
      const ok = await verify(user.passwordHash, password).catch(() => false);
      if (!ok) throw new UnauthorizedError(INVALID_LOGIN, 'invalid_credentials');
      // Said only to whoever knows the password, so it tells nobody else the account exists.
      if (user.confirmation) throw new UnauthorizedError(CONFIRM_FIRST, 'unconfirmed');
      await store.setLastLogin(user._id, clock.now());
      return { user, ...(await issueSession(user)) };
    },

    /**
     * Verifies a token (pinned algorithm, issuer, audience, expiry against the injected clock)
     * and its server-side session. Throws jsonwebtoken's errors (→ 401) or UnauthorizedError.
     */
    async authenticate(token: string): Promise<AuthUser> {
      const payload = jwt.verify(token, jwtKey, {
        algorithms: [JWT_ALGORITHM],
        issuer: config.jwt.issuer,
        audience: config.jwt.audience,
        clockTimestamp: Math.floor(clock.now().getTime() / 1000),
      });
      if (typeof payload === 'string' || !payload.jti || !payload.sub) {
        throw new UnauthorizedError('Your session is not valid. Please sign in again.', 'invalid_token');
      }
      if (!isUserId(payload.sub)) throw new UnauthorizedError();
      // Both by `_id`, at once: every signed-in request waits for this.
      const [session, user] = await Promise.all([store.sessionById(payload.jti), store.userById(payload.sub)]);
      if (!session || session.expiresAt <= clock.now() || String(session.userId) !== payload.sub) {
        throw new UnauthorizedError('Your session has ended. Please sign in again.', 'session_ended');
      }
      if (!user || user.disabled || user.confirmation) {
        throw new UnauthorizedError('Your session has ended. Please sign in again.', 'session_ended');
      }
      return {
        id: String(user._id),
        email: user.email,
        name: user.name,
        role: user.role,
        organisation: user.organisation ?? '',
        sessionId: session._id,
      };
    },

    async logOut(sessionId: string) {
      await store.deleteSession(sessionId);
    },

    async getUser(id: string) {
      const user = await store.userById(id);
      if (!user) throw new NotFoundError('No such user.');
      return user;
    },

    async listUsers(page: { skip: number; limit: number }) {
      return store.listUsers(page);
    },

    async updateProfile(id: string, changes: { name?: string; organisation?: string }) {
      const user = isUserId(id) ? await store.updateProfile(id, changes) : null;
      if (!user) throw new NotFoundError('No such user.');
      return user;
    },

    ...apiKeys,
  };
}

export type AuthService = ReturnType<typeof createAuthService>;

// ----- API keys (update servers and devices) -----

/** What a request authenticated by an API key knows about its caller. */
export interface AuthApiKey {
  id: string;
  name: string;
  scopes: ApiKeyScope[];
}

const API_KEY_FORMAT = /^dsk_([a-f0-9]{16})_([A-Za-z0-9_-]{43})$/;
const LAST_USED_EVERY_MS = 60_000;

const sha256 = (secret: string) => crypto.createHash('sha256').update(secret).digest();

export const INVALID_API_KEY = 'The API key is not valid or has been revoked.';

function createApiKeyFunctions(clock: Clock, audit: AuditService, store: AuthStore) {
  return {
    /** The full key is returned here and never again: only its secret's hash is stored. */
    async createApiKey(input: { name: string; scopes: ApiKeyScope[] }, byUserId: string | null) {
      const id = crypto.randomBytes(8).toString('hex');
      const secret = crypto.randomBytes(32).toString('base64url');
      const apiKey = await store.insertApiKey({
        _id: id,
        name: input.name,
        secretHash: sha256(secret).toString('hex'),
        scopes: input.scopes,
        createdByUserId: byUserId,
        createdAt: clock.now(),
      });
      await audit.record({ actorKind: 'user', actorId: byUserId, action: 'api-key.created', subjectKind: 'api-key', subjectId: id, detail: { name: input.name, scopes: input.scopes } });
      return { apiKey: apiKey.toObject(), key: `dsk_${id}_${secret}` };
    },

    async listApiKeys(page: { skip: number; limit: number }) {
      return store.listApiKeys(page);
    },

    /** Revoking twice keeps the first revocation time. */
    async revokeApiKey(id: string, byUserId: string | null) {
      const found = await store.apiKeyWithoutSecret(id);
      if (!found) throw new NotFoundError('No such API key.');
      if (found.revokedAt) return found;
      const revokedAt = clock.now();
      // Of two concurrent revocations one changes the key; the other returns it as it now is.
      if (!(await store.revokeApiKey(id, revokedAt))) return (await store.apiKeyWithoutSecret(id)) ?? found;
      await audit.record({ actorKind: 'user', actorId: byUserId, action: 'api-key.revoked', subjectKind: 'api-key', subjectId: id, detail: { name: found.name } });
      return { ...found, revokedAt };
    },

    /**
     * `dsk_<id>_<secret>` → the key, by one `_id` lookup and a constant-time comparison of the
     * secret's hash. Unknown, malformed and revoked keys get the same 401; a key without
     * `scope` a 403.
     */
    async authenticateApiKey(key: string, scope: ApiKeyScope): Promise<AuthApiKey> {
      const match = API_KEY_FORMAT.exec(key);
      const found = match ? await store.apiKeyById(match[1]!) : null;
      const given = sha256(match?.[2] ?? key);
      const stored = found ? Buffer.from(found.secretHash, 'hex') : crypto.randomBytes(32);
      if (!found || !crypto.timingSafeEqual(given, stored) || found.revokedAt) {
        throw new UnauthorizedError(INVALID_API_KEY, 'invalid_api_key');
      }
      if (!found.scopes.includes(scope)) throw new ForbiddenError(`This API key is not allowed to use ${scope}.`, 'scope_missing');
      const now = clock.now();
      if (!found.lastUsedAt || now.getTime() - found.lastUsedAt.getTime() >= LAST_USED_EVERY_MS) {
        await store.touchApiKey(found._id, now);
      }
      return { id: found._id, name: found.name, scopes: found.scopes as ApiKeyScope[] };
    },
  };
}
