import type { Clock } from '../server/clock';
import type { Config } from '../server/config';
import type { AppMiddleware } from '../server/app';
import type { Services } from '../server/services';

/** What every route module is built from. */
export interface RouteContext {
  config: Config;
  services: Services;
  middleware: AppMiddleware;
  clock: Clock;
}
