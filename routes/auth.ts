import type { Request, Response } from 'express';
import { Router } from './router';
import { z } from 'zod';
import { requireRole, requireSignedIn, safeNextPath, sessionCookieName, sessionCookieOptions } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { email, pagination, parse, parseBody, parseQuery, password, requiredText, shortText, toPage, pageBody } from '../server/middleware/validate';
import { API_KEY_SCOPES } from '../server/domain/auth';
import type { ApiKeyDoc, StoredUser } from '../server/store/auth';
import { LANDING } from '../server/services/auth';
import type { RouteContext } from './context';
import { labelled } from './form-labels';

export const signUpInput = z.object({
  email,
  password,
  name: requiredText(120, 'Name'),
  organisation: shortText(200, 'Organisation').optional(),
});

// The labels each form shows, by field (see ./form-labels).
export const signUpLabels = { name: 'Your name', organisation: 'Organisation', email: 'E-mail', password: 'Password' };
const logInLabels = { email: 'E-mail', password: 'Password' };
const confirmLabels = { token: 'Confirmation code (from the link in the e-mail)' };
const codeLabels = { code: 'Code' };
const enrolLabels = { code: 'Code from the app' };
const passwordChangeLabels = { currentPassword: 'Current password', newPassword: 'New password' };
const forgotLabels = { email: 'E-mail' };
const resetLabels = { token: 'Reset code (from the link in the e-mail)', newPassword: 'New password' };
/** The account page's two forms: the profile and the e-mail choices. */
const accountLabels = {
  name: 'Name',
  organisation: 'Organisation',
  caseAssigned: 'When a case or report comes into my queue, a reporter writes on my case, or a transfer waits for a decision',
  deadlineDigest: 'A daily digest of deadlines 2 days away or passed',
};
const staffUserLabels = { name: 'Name', email: 'E-mail', organisation: 'Organisation', role: 'Role', password: 'Initial password' };
const apiKeyLabels = { name: 'Name', scopes: 'Scopes' };

/** What a reset request answers, whether the e-mail has an account or not. */
export const RESET_ANSWER = 'If an account uses this address, we have e-mailed it a link to choose a new password. The link works once, for 24 hours.';

/** What sign-up answers, whether the e-mail was new or already had an account. */
export const SIGN_UP_ANSWER = 'Check your e-mail to finish signing up.';

export const confirmInput = z.object({ token: z.string('The confirmation link is incomplete.').trim().min(1, 'The confirmation link is incomplete.').max(200) });

export const logInInput = z.object({
  email: z.string().trim().min(1, 'Enter your e-mail address.').max(254),
  password: z.string().min(1, 'Enter your password.').max(256),
  next: z.string().max(500).optional(),
});

/** The API's sign-in may carry the second factor (an authenticator or recovery code). */
export const tokenInput = logInInput.extend({ code: z.string().trim().max(40).optional() });

export const codeInput = z.object({
  code: z.string('Enter the code from your authenticator app.').trim().min(1, 'Enter the code from your authenticator app.').max(40),
  next: z.string().max(500).optional(),
});

export const passwordChangeInput = z.object({
  currentPassword: z.string('Enter your current password.').min(1, 'Enter your current password.').max(256),
  newPassword: password,
});

export const forgotInput = z.object({ email });

/** Unchecked boxes are not sent: absent means off. */
export const notificationsInput = z.object({ caseAssigned: z.literal('on').optional(), deadlineDigest: z.literal('on').optional() });

export const resetInput = z.object({ token: confirmInput.shape.token, newPassword: password });

export const userIdParam = z.object({ id: z.string().regex(/^[a-f0-9]{24}$/, 'Not an account id.') });

/** What an admin can do to an account, each after a confirmation page. */
const ACCOUNT_ACTIONS = {
  disable: { title: 'Disable this account', button: 'Disable the account', explain: 'The person is signed out at once, everywhere, and cannot sign in until an admin enables the account again.' },
  enable: { title: 'Enable this account', button: 'Enable the account', explain: 'The person can sign in again with their password (and second factor).' },
  'reset-two-factor': { title: "Reset this account's two-factor sign-in", button: 'Reset two-factor sign-in', explain: 'For a lost or replaced phone: the authenticator and recovery codes stop working, the person is signed out, and sets up a new authenticator at the next sign-in.' },
  'reset-password': { title: 'Send a password reset link', button: 'Create the reset link', explain: 'A one-time link, valid for 24 hours, is e-mailed to the person and shown to you once, so you can pass it on another way. The current password keeps working until the link is used.' },
} as const;
type AccountAction = keyof typeof ACCOUNT_ACTIONS;
const accountActionParam = userIdParam.extend({ action: z.enum(Object.keys(ACCOUNT_ACTIONS) as [AccountAction, ...AccountAction[]], 'Not an account action.') });

/** The cookie that carries a sign-in between the password and the second factor. */
const PENDING_COOKIE = 'ds_signin';
const PENDING_MINUTES = 10;

export const profileInput = z.object({
  name: requiredText(120, 'Name').optional(),
  organisation: shortText(200, 'Organisation').optional(),
});

export const staffUserInput = signUpInput.extend({
  role: z.enum(['admin', 'investigator', 'customer'], 'Choose a role: admin, investigator or customer.'),
});

/** The public shape of an account; never the password hash. */
export const publicUser = (u: Pick<StoredUser, 'email' | 'name' | 'role' | 'organisation' | 'createdAt'> & { _id: unknown }) => ({
  id: String(u._id),
  email: u.email,
  name: u.name,
  role: u.role,
  organisation: u.organisation ?? '',
  createdAt: u.createdAt,
});

export const apiKeyInput = z.object({
  name: requiredText(120, 'Name'),
  // A form sends one checkbox as a string; the API sends a list.
  scopes: z
    .preprocess((v) => (typeof v === 'string' ? [v] : v), z.array(z.enum(API_KEY_SCOPES, `Scopes: choose from ${API_KEY_SCOPES.join(', ')}.`)).min(1, 'Choose at least one scope.'))
    .default(['check-ins']),
});

export const apiKeyId = z.object({ id: z.string().regex(/^[a-f0-9]{16}$/, 'Not an API key id.') });

/** The public shape of an API key: never its hash. */
export const publicApiKey = (k: Pick<ApiKeyDoc, 'name' | 'scopes' | 'createdAt' | 'revokedAt' | 'lastUsedAt'> & { _id: string }) => ({
  id: k._id,
  name: k.name,
  scopes: k.scopes,
  createdAt: k.createdAt,
  revokedAt: k.revokedAt ?? null,
  lastUsedAt: k.lastUsedAt ?? null,
});

export function authPages({ config, services, middleware }: RouteContext) {
  const router = Router();
  const cookie = sessionCookieName(config);

  const pendingCookie = { ...sessionCookieOptions(config), maxAge: PENDING_MINUTES * 60_000 };
  const pendingToken = (req: Request) => (typeof req.cookies?.[PENDING_COOKIE] === 'string' ? (req.cookies[PENDING_COOKIE] as string) : '');
  const nextQuery = (next: string | null) => (next ? `?next=${encodeURIComponent(next)}` : '');

  /** A fresh session id on every login: a planted cookie is never promoted (no fixation). */
  async function startSession(req: Request, res: Response, token: string) {
    if (req.user) await services.auth.logOut(req.user.sessionId);
    res.clearCookie(PENDING_COOKIE, sessionCookieOptions(config));
    res.cookie(cookie, token, sessionCookieOptions(config, true));
  }

  router.get('/login', labelled(logInLabels), (req, res) => {
    if (req.user) return res.redirect(303, LANDING[req.user.role]);
    res.render('auth/login', { title: 'Sign in', values: { next: safeNextPath(req.query.next) ?? '' } });
  });

  router.post(
    '/login',
    middleware.limits.login,
    labelled(logInLabels),
    formAction('auth/login', () => ({ title: 'Sign in' }), async (req, res) => {
      const input = parseBody(logInInput, req);
      const next = safeNextPath(input.next);
      const attempt = await services.auth.signIn(input.email, input.password);
      if (attempt.outcome === 'refused') {
        // The form again, with the e-mail kept and one message for any wrong pair.
        return res.status(401).render('auth/login', { title: 'Sign in', values: { email: input.email, next: next ?? '' }, errors: {}, formError: attempt.message });
      }
      if (attempt.outcome === 'second-step') {
        res.cookie(PENDING_COOKIE, attempt.pendingToken, pendingCookie);
        return res.redirect(303, `/login/${attempt.step}${nextQuery(next)}`);
      }
      await startSession(req, res, attempt.token);
      res.redirect(303, next ?? LANDING[attempt.user.role]);
    }),
  );

  // The second step: a code, or (staff without one, when it is required) enrolment.
  const secondStepPage = async (req: Request) => {
    const pending = await services.auth.pendingSignIn(pendingToken(req));
    const enrolment = pending.step === 'enrol' ? await services.auth.twoFactorEnrolment(String(pending.user._id)) : null;
    const next = safeNextPath(req.query.next ?? (req.body as { next?: unknown } | undefined)?.next) ?? '';
    return { title: pending.step === 'enrol' ? 'Set up two-factor sign-in' : 'Two-factor sign-in', step: pending.step, enrolment, action: `/login/${pending.step}`, next };
  };

  for (const step of ['code', 'enrol'] as const) {
    const view = step === 'code' ? 'auth/second-factor' : 'auth/enrol';
    const labels = step === 'code' ? codeLabels : enrolLabels;
    router.get(`/login/${step}`, labelled(labels), async (req, res) => {
      const locals = await secondStepPage(req);
      // Enrolled meanwhile (another tab): the code step it is.
      if (locals.step !== step) return res.redirect(303, `${locals.action}${nextQuery(locals.next || null)}`);
      res.render(view, { ...locals, values: { next: locals.next } });
    });

    router.post(
      `/login/${step}`,
      middleware.limits.login,
      labelled(labels),
      formAction(view, secondStepPage, async (req, res) => {
        const input = parseBody(codeInput, req);
        const { user, token, recoveryCodes } = await services.auth.completeSignIn(pendingToken(req), input.code);
        await startSession(req, res, token);
        const next = safeNextPath(input.next) ?? LANDING[user.role];
        if (recoveryCodes.length) return res.render('auth/recovery-codes', { title: 'Your recovery codes', recoveryCodes, continueTo: next });
        res.redirect(303, next);
      }),
    );
  }

  router.get('/signup', labelled(signUpLabels), (_req, res) => res.render('auth/signup', { title: 'Create an account' }));

  router.post(
    '/signup',
    labelled(signUpLabels),
    formAction('auth/signup', () => ({ title: 'Create an account' }), async (req, res) => {
      // The same answer for a new and a known e-mail: the mail tells the holder which it was.
      await services.auth.signUp(parseBody(signUpInput, req));
      res.render('auth/check-email', { title: 'Check your e-mail', message: SIGN_UP_ANSWER });
    }),
  );

  // The link in the e-mail shows a button: the POST confirms, so a mail scanner fetching the
  // link does not use up the one-time token.
  router.get('/signup/confirm', labelled(confirmLabels), (req, res) => {
    res.render('auth/confirm', { title: 'Confirm your e-mail', values: { token: typeof req.query.token === 'string' ? req.query.token : '' } });
  });

  router.post(
    '/signup/confirm',
    labelled(confirmLabels),
    formAction('auth/confirm', () => ({ title: 'Confirm your e-mail' }), async (req, res) => {
      await services.auth.confirmEmail(parseBody(confirmInput, req).token);
      res.flash('Your e-mail address is confirmed. You can sign in now.');
      res.redirect(303, '/login');
    }),
  );

  router.post('/logout', async (req, res) => {
    if (req.user) await services.auth.logOut(req.user.sessionId);
    res.clearCookie(cookie, sessionCookieOptions(config));
    res.redirect(303, '/');
  });

  const accountPage = async (req: Request) => ({ title: 'Your account', account: await services.auth.getUser(req.user!.id) });

  router.get('/account', requireSignedIn, labelled(accountLabels), async (req, res) => res.render('auth/account', await accountPage(req)));

  router.post(
    '/account',
    requireSignedIn,
    labelled(accountLabels),
    formAction('auth/account', accountPage, async (req, res) => {
      await services.auth.updateProfile(req.user!.id, parseBody(profileInput, req));
      res.flash('Your details were saved.');
      res.redirect(303, '/account');
    }),
  );

  router.post(
    '/account/notifications',
    requireRole('investigator', 'admin'),
    labelled(accountLabels),
    formAction('auth/account', accountPage, async (req, res) => {
      const input = parseBody(notificationsInput, req);
      await services.auth.setNotificationPreferences(req.user!.id, { caseAssigned: input.caseAssigned === 'on', deadlineDigest: input.deadlineDigest === 'on' });
      res.flash('Your e-mail choices were saved.');
      res.redirect(303, '/account');
    }),
  );

  router.get('/account/password', requireSignedIn, labelled(passwordChangeLabels), (_req, res) => res.render('auth/password', { title: 'Change your password' }));

  router.post(
    '/account/password',
    requireSignedIn,
    labelled(passwordChangeLabels),
    formAction('auth/password', () => ({ title: 'Change your password' }), async (req, res) => {
      const input = parseBody(passwordChangeInput, req);
      const { token } = await services.auth.changePassword(req.user!.id, input.currentPassword, input.newPassword);
      // Every other session ended with the change; this browser gets a new one.
      res.cookie(cookie, token, sessionCookieOptions(config, true));
      res.flash('Your password was changed. You were signed out everywhere else.');
      res.redirect(303, '/account');
    }),
  );

  const twoFactorPage = async (req: Request) => {
    const account = await services.auth.getUser(req.user!.id);
    const enrolment = account.twoFactor?.secret ? null : await services.auth.twoFactorEnrolment(req.user!.id);
    return { title: 'Two-factor sign-in', account, enrolment, action: '/account/two-factor', next: '' };
  };

  router.get('/account/two-factor', requireSignedIn, labelled(enrolLabels), async (req, res) => res.render('auth/enrol', await twoFactorPage(req)));

  router.post(
    '/account/two-factor',
    requireSignedIn,
    labelled(enrolLabels),
    formAction('auth/enrol', twoFactorPage, async (req, res) => {
      const recoveryCodes = await services.auth.confirmTwoFactor(req.user!.id, parseBody(codeInput, req).code);
      res.render('auth/recovery-codes', { title: 'Your recovery codes', recoveryCodes, continueTo: '/account' });
    }),
  );

  // Password reset by e-mail: the same answer whether or not the address has an account.
  router.get('/password/forgot', labelled(forgotLabels), (_req, res) => res.render('auth/forgot', { title: 'Reset your password' }));

  router.post(
    '/password/forgot',
    middleware.limits.login,
    labelled(forgotLabels),
    formAction('auth/forgot', () => ({ title: 'Reset your password' }), async (req, res) => {
      await services.auth.requestPasswordReset(parseBody(forgotInput, req).email);
      res.render('auth/check-email', { title: 'Check your e-mail', message: RESET_ANSWER });
    }),
  );

  // Like confirmation, the link shows a form: a mail scanner fetching it does not use it up.
  router.get('/password/reset', labelled(resetLabels), (req, res) => {
    res.render('auth/reset', { title: 'Choose a new password', values: { token: typeof req.query.token === 'string' ? req.query.token : '' } });
  });

  router.post(
    '/password/reset',
    middleware.limits.login,
    labelled(resetLabels),
    formAction('auth/reset', () => ({ title: 'Choose a new password' }), async (req, res) => {
      const input = parseBody(resetInput, req);
      await services.auth.resetPassword(input.token, input.newPassword);
      res.flash('Your password was changed. Sign in with the new one.');
      res.redirect(303, '/login');
    }),
  );

  // Account administration (admins only).
  const admin = requireRole('admin');
  const usersPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.auth.listUsers(page);
    return { title: 'Accounts', users: items, total, page };
  };

  router.get('/admin/users', admin, labelled(staffUserLabels), async (req, res) => res.render('auth/users', await usersPage(req)));

  router.post(
    '/admin/users',
    admin,
    labelled(staffUserLabels),
    formAction('auth/users', usersPage, async (req, res) => {
      const input = parseBody(staffUserInput, req);
      await services.auth.createUser(input, input.role);
      res.flash(`Account created for ${input.email}.`);
      res.redirect(303, '/admin/users');
    }),
  );

  // API keys for update servers (admins only). The new key is shown once, on the response to
  // the form that made it, and never stored or shown again.
  const apiKeysPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.auth.listApiKeys(page);
    return { title: 'API keys', apiKeys: items.map(publicApiKey), total, page, newKey: null };
  };

  router.get('/admin/api-keys', admin, labelled(apiKeyLabels), async (req, res) => res.render('auth/api-keys', await apiKeysPage(req)));

  router.post(
    '/admin/api-keys',
    admin,
    labelled(apiKeyLabels),
    formAction('auth/api-keys', apiKeysPage, async (req, res) => {
      const { key, apiKey } = await services.auth.createApiKey(parseBody(apiKeyInput, req), req.user!.id);
      res.set('Cache-Control', 'no-store');
      res.status(201).render('auth/api-keys', { ...(await apiKeysPage(req)), newKey: { key, name: apiKey.name } });
    }),
  );

  router.get('/admin/users/:id/:action', admin, async (req, res) => {
    const { id, action } = parse(accountActionParam, req.params);
    res.render('auth/account-action', { account: await services.auth.getUser(id), action, ...ACCOUNT_ACTIONS[action] });
  });

  router.post('/admin/users/:id/:action', admin, async (req, res) => {
    const { id, action } = parse(accountActionParam, req.params);
    const adminId = req.user!.id;
    if (action === 'reset-password') {
      const { user, link, expiresAt } = await services.auth.adminPasswordReset(adminId, id);
      res.set('Cache-Control', 'no-store');
      return res.render('auth/reset-link', { title: 'Password reset link', account: user, link, expiresAt });
    }
    if (action === 'reset-two-factor') {
      const user = await services.auth.resetTwoFactor(adminId, id);
      res.flash(`Two-factor sign-in was reset for ${user.email}: they set up a new authenticator at their next sign-in.`);
    } else {
      const user = await services.auth.setAccountDisabled(adminId, id, action === 'disable');
      res.flash(action === 'disable' ? `${user.email} is disabled and signed out everywhere.` : `${user.email} can sign in again.`);
    }
    res.redirect(303, '/admin/users');
  });

  // Revoking shows a confirmation page first; the POST from it revokes.
  router.get('/admin/api-keys/:id/revoke', admin, async (req, res) => {
    const apiKey = await services.auth.apiKey(parse(apiKeyId, req.params).id);
    res.render('auth/revoke-key', { title: 'Revoke an API key', apiKey: publicApiKey(apiKey) });
  });

  router.post('/admin/api-keys/:id/revoke', admin, async (req, res) => {
    const revoked = await services.auth.revokeApiKey(parse(apiKeyId, req.params).id, req.user!.id);
    res.flash(`API key "${revoked.name}" revoked: update servers using it are refused from now on.`);
    res.redirect(303, '/admin/api-keys');
  });

  return router;
}

export function authApi({ services, middleware }: RouteContext) {
  const router = Router();

  router.post('/signup', async (req, res) => {
    await services.auth.signUp(parseBody(signUpInput, req));
    res.status(202).json({ message: SIGN_UP_ANSWER });
  });

  router.post('/confirm', async (req, res) => {
    res.json({ user: publicUser(await services.auth.confirmEmail(parseBody(confirmInput, req).token)) });
  });

  router.post('/token', middleware.limits.login, async (req, res) => {
    const input = parseBody(tokenInput, req);
    const { user, token, expiresAt } = await services.auth.logIn(input.email, input.password, input.code);
    res.json({ user: publicUser(user), token, expiresAt });
  });

  router.delete('/session', requireSignedIn, async (req, res) => {
    await services.auth.logOut(req.user!.sessionId);
    res.status(204).end();
  });

  router.get('/me', requireSignedIn, async (req, res) => {
    res.json({ user: publicUser(await services.auth.getUser(req.user!.id)) });
  });

  router.patch('/me', requireSignedIn, async (req, res) => {
    const user = await services.auth.updateProfile(req.user!.id, parseBody(profileInput.strict(), req));
    res.json({ user: publicUser(user) });
  });

  return router;
}

export function usersApi({ services }: RouteContext) {
  const router = Router();
  router.use(requireRole('admin'));

  router.get('/', async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.auth.listUsers(page);
    res.json(pageBody(items.map(publicUser), total, page));
  });

  router.post('/', async (req, res) => {
    const input = parseBody(staffUserInput, req);
    res.status(201).json({ user: publicUser(await services.auth.createUser(input, input.role)) });
  });

  return router;
}

export function apiKeysApi({ services }: RouteContext) {
  const router = Router();
  router.use(requireRole('admin'));

  router.get('/', async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.auth.listApiKeys(page);
    res.json(pageBody(items.map(publicApiKey), total, page));
  });

  router.post('/', async (req, res) => {
    const { apiKey, key } = await services.auth.createApiKey(parseBody(apiKeyInput.strict(), req), req.user!.id);
    res.set('Cache-Control', 'no-store');
    res.status(201).json({ apiKey: publicApiKey(apiKey), key });
  });

  router.delete('/:id', async (req, res) => {
    res.json({ apiKey: publicApiKey(await services.auth.revokeApiKey(parse(apiKeyId, req.params).id, req.user!.id)) });
  });

  return router;
}
