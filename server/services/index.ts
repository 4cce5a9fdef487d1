import type { Clock } from '../clock';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Stores } from '../store';
import { createAuditService } from './audit';
import { createAuthService } from './auth';
import { createCaseIntake, createCasesService } from './cases';
import { createCatalogueService } from './catalogue';
import { createCertificatesService } from './certificates';
import { createCheckInsService } from './check-ins';
import { createEpcisService } from './epcis';
import { createFilesService } from './files';
import { createFlagsService } from './flags';
import { createInsightService } from './insight';
import { createLinkerService } from './linker';
import { createNotificationsService } from './notifications';
import { createPartnersService } from './partners';
import { createRegistrationsService } from './registrations';
import { createReportsService } from './reports';
import { createScreeningReview, createScreeningService } from './screening';
import { createVerificationService } from './verification';
import { createWebhooksService } from './webhooks';

export interface ServiceDeps {
  config: Config;
  clock: Clock;
  logger: Logger;
  /** Every query and write goes through these repositories (server/store). */
  stores: Stores;
}

/**
 * Every domain service, built once per app from the same dependencies. Routes receive this
 * object; services call each other through it, one explicit call per cross-module effect.
 */
export function createServices(deps: ServiceDeps) {
  // In dependency order, no cycle: the case intake (opening cases, a unit's cases) needs only
  // the database and the audit log; flags, registrations and reports open cases through it;
  // the investigators' work on cases acts on check-ins, registrations and reports, built
  // before it and passed in as narrow ports.
  const audit = createAuditService(deps);
  const notifications = createNotificationsService(deps);
  // Built early: transfers and EPCIS query results go into its outbox (cases carry their own events).
  const webhooks = createWebhooksService({ ...deps, audit });
  const auth = createAuthService({ ...deps, audit, notifications });
  const caseIntake = createCaseIntake({ ...deps, audit, notifications });
  const files = createFilesService(deps);
  const flags = createFlagsService({ ...deps, cases: caseIntake, audit });
  const checkIns = createCheckInsService({ ...deps, flags });
  const catalogue = createCatalogueService({ ...deps, audit });
  const screening = createScreeningService({ ...deps, audit });
  const certificates = createCertificatesService({ ...deps, audit, files, flags });
  const verification = createVerificationService({ ...deps, audit, files, flags });
  const registrations = createRegistrationsService({ ...deps, audit, auth, files, flags, notifications, cases: caseIntake, screening, certificates, webhooks });
  const partners = createPartnersService({ ...deps, audit, auth, flags, screening });
  const screeningReview = createScreeningReview({ ...deps, audit, flags, ports: { releaseRegistration: registrations.releaseHeldRegistration, releaseSale: partners.releaseHeldSale } });
  const linker = createLinkerService(deps);
  const reports = createReportsService({ ...deps, files, cases: caseIntake, audit, catalogue, flags, linker, webhooks, notifications });
  const cases = createCasesService({ ...deps, audit, notifications, intake: caseIntake, ports: { unitControls: checkIns, registrations, reports, partners } });
  const firstPage = { page: 1, perPage: 6, skip: 0, limit: 6 };
  const insight = createInsightService({
    ...deps,
    audit,
    dueDiligence: { certificatesExpiringSoon: () => certificates.expiringSoon(firstPage), unitsDueVerification: () => verification.dueForVerification(firstPage), verificationDueMonths: verification.dueMonths },
    partners: { dashboardPartners: partners.dashboardPartners },
  });
  const epcis = createEpcisService({ ...deps, audit, flags, webhooks });
  return { audit, auth, cases, catalogue, certificates, checkIns, epcis, files, flags, insight, linker, notifications, partners, registrations, reports, screening, screeningReview, verification, webhooks };
}

export type Services = ReturnType<typeof createServices>;
