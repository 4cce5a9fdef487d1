import crypto from 'node:crypto';
import request from 'supertest';
import type { Role } from '../../models/auth';
import type { TestContext } from './context';

export const TEST_PASSWORD = 'correct horse battery staple';

let counter = 0;
export const unique = (prefix: string) => `${prefix}-${++counter}-${crypto.randomBytes(3).toString('hex')}`;

export async function makeUser(ctx: TestContext, role: Role = 'customer', fields: { email?: string; name?: string; organisation?: string } = {}) {
  const email = fields.email ?? `${unique(role)}@example.test`;
  const user = await ctx.services.auth.createUser(
    { email, password: TEST_PASSWORD, name: fields.name ?? `Test ${role}`, organisation: fields.organisation },
    role,
  );
  return { user, email, password: TEST_PASSWORD };
}

/** A user with a Bearer token for the JSON API. */
export async function apiUser(ctx: TestContext, role: Role = 'customer') {
  const made = await makeUser(ctx, role);
  const { token } = await ctx.services.auth.issueSession(made.user);
  return { ...made, token, auth: { Authorization: `Bearer ${token}` } };
}

export function csrfFrom(html: string): string {
  const m = /name="_csrf" value="([^"]+)"/.exec(html);
  if (!m?.[1]) throw new Error('no CSRF token in page');
  return m[1];
}

/**
 * A browser-like agent (cookies kept) for page flows. `csrf(path)` loads a page and returns
 * the token its forms carry.
 */
export function pageAgent(ctx: TestContext) {
  const agent = request.agent(ctx.app);
  const csrf = async (path = '/login') => csrfFrom((await agent.get(path)).text);
  return Object.assign(agent, {
    csrf,
    /**
     * Submits a form as a browser would: loads `fromPage` for its CSRF token, then posts.
     * (superagent attaches cookies when a request is created, so the token comes first.)
     */
    async form(action: string, fields: Record<string, unknown>, fromPage = action) {
      const token = await csrf(fromPage);
      return agent.post(action).type('form').send({ ...fields, _csrf: token });
    },
  });
}

/** A page agent already signed in as a new user of `role`. */
export async function signedInAgent(ctx: TestContext, role: Role = 'customer') {
  const made = await makeUser(ctx, role);
  const agent = pageAgent(ctx);
  const res = await agent.form('/login', { email: made.email, password: made.password });
  if (res.status !== 303) throw new Error(`login failed: ${res.status}`);
  return { agent, ...made };
}
