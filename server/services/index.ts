import type { Clock } from '../clock';
import type { Config } from '../config';
import type { Logger } from '../logger';
import { createAuditService } from './audit';
import { createAuthService } from './auth';
import { createCasesService } from './cases';
import { createCheckInsService } from './check-ins';
import { createFilesService } from './files';
import { createFlagsService } from './flags';

export interface ServiceDeps {
  config: Config;
  clock: Clock;
  logger: Logger;
}

/**
 * Every domain service, built once per app from the same dependencies. Routes receive this
 * object; services call each other through it, one explicit call per cross-module effect.
 */
export function createServices(deps: ServiceDeps) {
  const audit = createAuditService(deps);
  const auth = createAuthService(deps);
  const cases = createCasesService(deps);
  const files = createFilesService(deps);
  const flags = createFlagsService({ ...deps, cases });
  const checkIns = createCheckInsService();
  return { audit, auth, cases, checkIns, files, flags };
}

export type Services = ReturnType<typeof createServices>;
