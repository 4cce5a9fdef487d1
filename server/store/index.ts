import { createCatalogueStore } from './catalogue';
import { createCheckInHistoryStore } from './check-in-history';
import { createCheckInsStore } from './check-ins';
import type { Engine } from './engine';
import { createRegistrationsStore } from './registrations';

/**
 * Every repository of the portal, built once per app from the detected engine. Services
 * receive this object (`deps.stores`) and never hold a Mongoose model or driver call: every
 * query and write lives in server/store, one file per aggregate.
 */
export function createStores(engine: Engine) {
  return {
    engine,
    catalogue: createCatalogueStore(engine),
    checkIns: createCheckInsStore(engine),
    checkInHistory: createCheckInHistoryStore(engine),
    registrations: createRegistrationsStore(engine),
  };
}

export type Stores = ReturnType<typeof createStores>;
