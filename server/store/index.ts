import type { Engine } from './engine';
import { createLimitsStore } from './limits';

/**
 * Every repository of the portal, built once per app from the detected engine. Services
 * receive this object (`deps.stores`) and never hold a Mongoose model or driver call: every
 * query and write lives in server/store, one file per aggregate.
 */
export function createStores(engine: Engine) {
  return { engine, limits: createLimitsStore(engine) };
}

export type Stores = ReturnType<typeof createStores>;
