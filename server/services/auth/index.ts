import crypto from 'node:crypto';
import { verify } from '@node-rs/argon2';
import jwt from 'jsonwebtoken';
import type { Clock } from '../../clock';
import type { Config } from '../../config';
import type { AuditService } from '../audit';
import type { NotificationsService } from '../notifications';
import { BadRequestError, ConflictError, ForbiddenError, NotFoundError, UnauthorizedError } from '../../errors';
import { isUserId, type Role } from '../../domain/auth';
import type { Stores } from '../../store';
import type { StoredUser, UserDoc } from '../../store/auth';
import { createAccountFunctions } from './accounts';
import { hashPassword, sha256Hex } from './passwords';
import { createApiKeyFunctions } from './api-keys';
import { createTwoFactor, hasTwoFactor, INVALID_CODE } from './two-factor';

export type { AuthApiKey } from './api-keys';
export { INVALID_API_KEY } from './api-keys';

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

export { hashPassword } from './passwords';

// Verified against when the e-mail is unknown, so both failures take the same time.
let dummyHash: Promise<string> | null = null;

export const INVALID_LOGIN = 'E-mail or password is incorrect.';
export const CONFIRM_FIRST = 'Confirm your e-mail address first: follow the link in the e-mail we sent when you signed up (or sign up again for a new link).';
export const INVALID_CONFIRMATION = 'This confirmation link is not valid, was already used or has expired. Sign up again to get a new one.';

/** How long a sign-up's confirmation link works. */
const CONFIRMATION_HOURS = 24;
/** `<userId>.<secret>`: the account is found by `_id`, the secret checked by its hash. */
const CONFIRMATION_TOKEN = /^([a-f0-9]{24})\.([A-Za-z0-9_-]{43})$/;


/** How long the step between a right password and the second factor may take. */
const SECOND_FACTOR_MINUTES = 10;
export const SIGN_IN_EXPIRED = 'Your sign-in took too long. Please enter your e-mail and password again.';

/** Where each role starts its work after signing in. */
export const LANDING: Record<Role, string> = { investigator: '/cases', admin: '/admin', customer: '/account/products', partner: '/partner' };

/** Staff whose sign-in needs a second factor, and what is left to do after the password. */
export type SecondStep = 'code' | 'enrol';

/**
 * The outcome of a right or wrong password: refused (one message for an unknown e-mail and a
 * wrong password), signed in, or waiting for a second factor under a short-lived token.
 */
export type SignIn =
  | { outcome: 'refused'; code: 'invalid_credentials' | 'unconfirmed'; message: string }
  | { outcome: 'signed-in'; user: UserDoc; token: string; expiresAt: Date }
  | { outcome: 'second-step'; step: SecondStep; user: UserDoc; pendingToken: string };

const isStaff = (role: Role) => role === 'investigator' || role === 'admin';

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

  async function issueSession(user: Pick<StoredUser, '_id' | 'sessionGeneration'>): Promise<{ token: string; expiresAt: Date }> {
    const now = clock.now();
    await purgeExpiredSessions(now);
    const expiresAt = new Date(now.getTime() + config.jwt.ttlMinutes * 60_000);
    const sessionId = crypto.randomBytes(24).toString('base64url');
    await store.insertSession({ _id: sessionId, userId: user._id, createdAt: now, expiresAt, generation: user.sessionGeneration ?? 0 });
    const token = jwt.sign(
      { iat: Math.floor(now.getTime() / 1000) },
      jwtKey,
      {
        algorithm: JWT_ALGORITHM,
        expiresIn: config.jwt.ttlMinutes * 60,
        issuer: config.jwt.issuer,
        audience: config.jwt.audience,
        subject: String(user._id),
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

  async function getUser(id: string) {
    const user = isUserId(id) ? await store.userById(id) : null;
    if (!user) throw new NotFoundError('No such user.');
    return user;
  }

  const twoFactor = createTwoFactor({ clock, audit: deps.audit, store, issuer: 'Downstream' });
  const accounts = createAccountFunctions({ config, clock, audit: deps.audit, notifications, store, getUser, issueSession });
  const pendingAudience = `${config.jwt.audience}:second-factor`;

  /** The password step: refused, signed in, or a second step under a short-lived token. */
  async function signIn(email: string, password: string): Promise<SignIn> {
    const user = await store.userByEmail(email.trim().toLowerCase());
    if (!user || user.disabled) {
      dummyHash ??= hashPassword(crypto.randomBytes(16).toString('hex'));
      await verify(await dummyHash, password).catch(() => false);
      return { outcome: 'refused', code: 'invalid_credentials', message: INVALID_LOGIN };
    }
    const ok = await verify(user.passwordHash, password).catch(() => false);
    if (!ok) return { outcome: 'refused', code: 'invalid_credentials', message: INVALID_LOGIN };
    // Said only to whoever knows the password, so it tells nobody else the account exists.
    if (user.confirmation) return { outcome: 'refused', code: 'unconfirmed', message: CONFIRM_FIRST };
    await store.setLastLogin(user._id, clock.now());
    const step: SecondStep | null = hasTwoFactor(user) ? 'code' : isStaff(user.role) && config.staffTwoFactor === 'required' ? 'enrol' : null;
    if (!step) return { outcome: 'signed-in', user, ...(await issueSession(user)) };
    // Signed, not stored: whichever instance answers the next step can check it.
    const pendingToken = jwt.sign({ step, iat: Math.floor(clock.now().getTime() / 1000) }, jwtKey, {
      algorithm: JWT_ALGORITHM,
      expiresIn: SECOND_FACTOR_MINUTES * 60,
      issuer: config.jwt.issuer,
      audience: pendingAudience,
      subject: String(user._id),
    });
    return { outcome: 'second-step', step, user, pendingToken };
  }

  /** Whose sign-in waits for a second step, and which; throws when the token is not (or no longer) valid. */
  async function pendingSignIn(pendingToken: string) {
    let payload: string | jwt.JwtPayload;
    try {
      payload = jwt.verify(pendingToken, jwtKey, { algorithms: [JWT_ALGORITHM], issuer: config.jwt.issuer, audience: pendingAudience, clockTimestamp: Math.floor(clock.now().getTime() / 1000) });
    } catch {
      throw new UnauthorizedError(SIGN_IN_EXPIRED, 'sign_in_expired');
    }
    const step = typeof payload === 'string' ? null : (payload.step as unknown);
    const user = typeof payload !== 'string' && payload.sub && isUserId(payload.sub) ? await store.userById(payload.sub) : null;
    if (!user || user.disabled || (step !== 'code' && step !== 'enrol')) throw new UnauthorizedError(SIGN_IN_EXPIRED, 'sign_in_expired');
    // Enrolled meanwhile (another tab): the code step it is.
    return { user, step: (hasTwoFactor(user) ? 'code' : step) as SecondStep };
  }

  /**
   * The second step of a page sign-in: a code (step `code`), or the first code of a new
   * enrolment (step `enrol`, which also returns the recovery codes to show once).
   */
  async function completeSignIn(pendingToken: string, code: string) {
    const { user, step } = await pendingSignIn(pendingToken);
    let recoveryCodes: string[] = [];
    if (step === 'enrol') recoveryCodes = await twoFactor.confirmEnrolment(user, code);
    else if (!(await twoFactor.check(user, code))) throw new BadRequestError(INVALID_CODE, { code: INVALID_CODE }, 'invalid_second_factor');
    return { user, recoveryCodes, ...(await issueSession(user)) };
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

    signIn,
    completeSignIn,
    pendingSignIn,

    /**
     * The API's sign-in: the password, and for an account with a second factor its `code`
     * (from the authenticator or a recovery code) in the same request. Staff who must enrol
     * do it on the web first.
     */
    async logIn(email: string, password: string, code?: string) {
      const attempt = await signIn(email, password);
      if (attempt.outcome === 'refused') throw new UnauthorizedError(attempt.message, attempt.code);
      if (attempt.outcome === 'signed-in') return attempt;
      if (attempt.step === 'enrol') throw new ForbiddenError('Set up two-factor sign-in first: sign in on the web, where you are asked to enrol an authenticator app.', 'two_factor_enrolment_required');
      if (!code) throw new UnauthorizedError('This account signs in with a second factor: send the code from your authenticator app (or a recovery code) as "code".', 'second_factor_required');
      if (!(await twoFactor.check(attempt.user, code))) throw new UnauthorizedError(INVALID_CODE, 'invalid_second_factor');
      return { user: attempt.user, ...(await issueSession(attempt.user)) };
    },

    /** The secret and QR code to enrol an authenticator (first sign-in, or from the account page). */
    async twoFactorEnrolment(userId: string) {
      return twoFactor.enrolment(await getUser(userId));
    },

    /** A signed-in user's enrolment, confirmed by a first code: the recovery codes, shown once. */
    async confirmTwoFactor(userId: string, code: string) {
      return twoFactor.confirmEnrolment(await getUser(userId), code);
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
      if (!user || user.disabled || user.confirmation || (session.generation ?? 0) !== (user.sessionGeneration ?? 0)) {
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

    getUser,

    async listUsers(page: { skip: number; limit: number }) {
      return store.listUsers(page);
    },

    /** Which e-mails a staff member gets about their cases. */
    async setNotificationPreferences(id: string, prefs: { caseAssigned: boolean; deadlineDigest: boolean }) {
      await getUser(id);
      await store.setNotificationPreferences(id, prefs);
    },

    async updateProfile(id: string, changes: { name?: string; organisation?: string }) {
      const user = isUserId(id) ? await store.updateProfile(id, changes) : null;
      if (!user) throw new NotFoundError('No such user.');
      return user;
    },

    ...apiKeys,
    ...accounts,
  };
}

export type AuthService = ReturnType<typeof createAuthService>;

