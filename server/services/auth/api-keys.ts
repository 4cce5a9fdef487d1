import crypto from 'node:crypto';
import type { Clock } from '../../clock';
import { ForbiddenError, NotFoundError, UnauthorizedError } from '../../errors';
import type { ApiKeyScope } from '../../domain/auth';
import type { AuthStore } from '../../store/auth';
import type { AuditService } from '../audit';

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

export function createApiKeyFunctions(clock: Clock, audit: AuditService, store: AuthStore) {
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

    async apiKey(id: string) {
      const found = await store.apiKeyWithoutSecret(id);
      if (!found) throw new NotFoundError('No such API key.');
      return found;
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
