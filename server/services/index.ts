import type { Clock } from '../clock';
import type { Config } from '../config';
import type { Logger } from '../logger';
import type { Stores } from '../store';
import { createAuditService } from './audit';
import { createAuthService } from './auth';
import { createCasesService } from './cases';
import { createCatalogueService } from './catalogue';
import { createCheckInsService } from './check-ins';
import { createFilesService } from './files';
import { createFlagsService } from './flags';
import { createInsightService } from './insight';
import { createLinkerService } from './linker';
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
  const audit = createAuditService(deps);
  const auth = createAuthService({ ...deps, audit });
  // Cases act on check-ins, reports and registrations, which are built later (they open cases):
  // the peers are looked up when an action runs.
  const cases = createCasesService({ ...deps, audit, peers: () => ({ checkIns, reports, registrations }) });
  const files = createFilesService(deps);
  const flags = createFlagsService({ ...deps, cases, audit });
  const checkIns = createCheckInsService({ ...deps, flags });
  const catalogue = createCatalogueService({ ...deps, audit });
  const registrations = createRegistrationsService({ ...deps, audit, auth, files, flags, cases });
  const linker = createLinkerService(deps);
  const reports = createReportsService({ ...deps, files, cases, audit, catalogue, flags, linker });
  const insight = createInsightService({ ...deps, audit });
  return { audit, auth, cases, catalogue, checkIns, files, flags, insight, linker, registrations, reports };
}

export type Services = ReturnType<typeof createServices>;
