import { createAuditStore } from './audit';
import { createAuthStore } from './auth';
import { createCasesStore } from './cases';
import type { Engine } from './engine';
import { createFlagsStore } from './flags';
import { createJobsStore } from './jobs';

/**
 * Every repository of the portal, built once per app from the detected engine. Services
 * receive this object (`deps.stores`) and never hold a Mongoose model or driver call: every
 * query and write lives in server/store, one file per aggregate.
 */
export function createStores(engine: Engine) {
  return {
    engine,
    audit: createAuditStore(engine),
    auth: createAuthStore(engine),
    cases: createCasesStore(engine),
    flags: createFlagsStore(engine),
    jobs: createJobsStore(engine),
  };
}

export type Stores = ReturnType<typeof createStores>;
