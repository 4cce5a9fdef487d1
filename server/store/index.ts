import { createAuditStore } from './audit';
import { createAuthStore } from './auth';
import { createCasesStore } from './cases';
import { createCatalogueStore } from './catalogue';
import { createCertificatesStore } from './certificates';
import { createCheckInHistoryStore } from './check-in-history';
import { createCheckInsStore } from './check-ins';
import type { Engine } from './engine';
import { createEpcisStore } from './epcis';
import { createFlagsStore } from './flags';
import { createIdentityRequestsStore } from './identity-requests';
import { createInsightStore } from './insight';
import { createJobsStore } from './jobs';
import { createLimitsStore } from './limits';
import { createNotificationsStore } from './notifications';
import { createPartnersStore } from './partners';
import { createRegistrationsStore } from './registrations';
import { createReportsStore } from './reports';
import { createScreeningStore } from './screening';
import { createVerificationStore } from './verification';
import { createWebhooksStore } from './webhooks';

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
    catalogue: createCatalogueStore(engine),
    certificates: createCertificatesStore(engine),
    checkIns: createCheckInsStore(engine),
    checkInHistory: createCheckInHistoryStore(engine),
    epcis: createEpcisStore(engine),
    flags: createFlagsStore(engine),
    identityRequests: createIdentityRequestsStore(engine),
    insight: createInsightStore(engine),
    jobs: createJobsStore(engine),
    limits: createLimitsStore(engine),
    notifications: createNotificationsStore(engine),
    partners: createPartnersStore(engine),
    registrations: createRegistrationsStore(engine),
    reports: createReportsStore(engine),
    screening: createScreeningStore(engine),
    verification: createVerificationStore(engine),
    webhooks: createWebhooksStore(engine),
  };
}

export type Stores = ReturnType<typeof createStores>;
