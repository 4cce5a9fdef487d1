import { type Request } from 'express';
import { Router } from './router';
import { z } from 'zod';
import { requireRole, requireSignedIn, safeNextPath, sessionCookieName, sessionCookieOptions } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { email, pagination, parse, parseBody, parseQuery, password, requiredText, shortText, toPage, pageBody } from '../server/middleware/validate';
import { API_KEY_SCOPES } from '../server/domain/auth';
import type { ApiKeyDoc, UserDoc } from '../server/store/auth';
import type { RouteContext } from './context';

export const signUpInput = z.object({
  email,
  password,
  name: requiredText(120, 'Name'),
  organisation: shortText(200, 'Organisation').optional(),
});

/** What sign-up answers, whether the e-mail was new or already had an account. */
export const SIGN_UP_ANSWER = 'Check your e-mail to finish signing up.';

export const confirmInput = z.object({ token: z.string('The confirmation link is incomplete.').trim().min(1, 'The confirmation link is incomplete.').max(200) });

export const logInInput = z.object({
  email: z.string().trim().min(1, 'Enter your e-mail address.').max(254),
  password: z.string().min(1, 'Enter your password.').max(256),
  next: z.string().max(500).optional(),
});

export const profileInput = z.object({
  name: requiredText(120, 'Name').optional(),
  organisation: shortText(200, 'Organisation').optional(),
});

export const staffUserInput = signUpInput.extend({
  role: z.enum(['admin', 'investigator', 'customer'], 'Choose a role: admin, investigator or customer.'),
});

/** The public shape of an account; never the password hash. */
export const publicUser = (u: Pick<UserDoc, 'email' | 'name' | 'role' | 'organisation' | 'createdAt'> & { _id: unknown }) => ({
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

  router.get('/login', (req, res) => {
    if (req.user) return res.redirect(303, '/account');
    res.render('auth/login', { title: 'Sign in', values: { next: safeNextPath(req.query.next) ?? '' } });
  });

  router.post(
    '/login',
    middleware.limits.login,
    formAction('auth/login', () => ({ title: 'Sign in' }), async (req, res) => {
      const input = parseBody(logInInput, req);
      const { token, user } = await services.auth.logIn(input.email, input.password);
      // A fresh session id on every login: a planted cookie is never promoted (no fixation).
      if (req.user) await services.auth.logOut(req.user.sessionId);
      res.cookie(cookie, token, sessionCookieOptions(config, true));
      // A partner's user lands on its portal; everyone else on their account.
      res.redirect(303, safeNextPath(input.next) ?? (user.role === 'partner' ? '/partner' : '/account'));
    }),
  );

  router.get('/signup', (_req, res) => res.render('auth/signup', { title: 'Create an account' }));

  router.post(
    '/signup',
    formAction('auth/signup', () => ({ title: 'Create an account' }), async (req, res) => {
      // The same answer for a new and a known e-mail: the mail tells the holder which it was.
      await services.auth.signUp(parseBody(signUpInput, req));
      res.render('auth/check-email', { title: 'Check your e-mail', message: SIGN_UP_ANSWER });
    }),
  );

  // The link in the e-mail shows a button: the POST confirms, so a mail scanner fetching the
  // link does not use up the one-time token.
  router.get('/signup/confirm', (req, res) => {
    res.render('auth/confirm', { title: 'Confirm your e-mail', values: { token: typeof req.query.token === 'string' ? req.query.token : '' } });
  });

  router.post(
    '/signup/confirm',
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

  router.get('/account', requireSignedIn, async (req, res) => res.render('auth/account', await accountPage(req)));

  router.post(
    '/account',
    requireSignedIn,
    formAction('auth/account', accountPage, async (req, res) => {
      await services.auth.updateProfile(req.user!.id, parseBody(profileInput, req));
      res.flash('Your details were saved.');
      res.redirect(303, '/account');
    }),
  );

  // Account administration (admins only).
  const admin = requireRole('admin');
  const usersPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await services.auth.listUsers(page);
    return { title: 'Accounts', users: items, total, page };
  };

  router.get('/admin/users', admin, async (req, res) => res.render('auth/users', await usersPage(req)));

  router.post(
    '/admin/users',
    admin,
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

  router.get('/admin/api-keys', admin, async (req, res) => res.render('auth/api-keys', await apiKeysPage(req)));

  router.post(
    '/admin/api-keys',
    admin,
    formAction('auth/api-keys', apiKeysPage, async (req, res) => {
      const { key, apiKey } = await services.auth.createApiKey(parseBody(apiKeyInput, req), req.user!.id);
      res.set('Cache-Control', 'no-store');
      res.status(201).render('auth/api-keys', { ...(await apiKeysPage(req)), newKey: { key, name: apiKey.name } });
    }),
  );

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
    const input = parseBody(logInInput, req);
    const { user, token, expiresAt } = await services.auth.logIn(input.email, input.password);
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
