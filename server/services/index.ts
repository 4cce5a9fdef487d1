import type { Clock } from '../clock';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Stores } from '../store';
import { createAuditService } from './audit';
import { createAuthService } from './auth';
import { createCaseIntake, createCasesService } from './cases';
import { createCatalogueService } from './catalogue';
import { createCheckInsService } from './check-ins';
import { createFilesService } from './files';
import { createFlagsService } from './flags';
import { createInsightService } from './insight';
import { createLinkerService } from './linker';
import { createNotificationsService } from './notifications';
import { createRegistrationsService } from './registrations';
import { createReportsService } from './reports';

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
  const auth = createAuthService({ ...deps, audit, notifications });
  const caseIntake = createCaseIntake({ ...deps, audit });
  const files = createFilesService(deps);
  const flags = createFlagsService({ ...deps, cases: caseIntake, audit });
  const checkIns = createCheckInsService({ ...deps, flags });
  const catalogue = createCatalogueService({ ...deps, audit });
  const registrations = createRegistrationsService({ ...deps, audit, auth, files, flags, notifications, cases: caseIntake });
  const linker = createLinkerService(deps);
  const reports = createReportsService({ ...deps, files, cases: caseIntake, audit, catalogue, flags, linker });
  const cases = createCasesService({ ...deps, audit, notifications, intake: caseIntake, ports: { unitControls: checkIns, registrations, reports } });
  const insight = createInsightService({ ...deps, audit });
  return { audit, auth, cases, catalogue, checkIns, files, flags, insight, linker, notifications, registrations, reports };
}

export type Services = ReturnType<typeof createServices>;
