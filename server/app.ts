import cookieParser from 'cookie-parser';
import express, { type Express } from 'express';
import helmet from 'helmet';
import type { Clock } from './clock';
import type { Config } from './config';
import type { Database } from './db';
import type { Logger } from './logger';
import { loadUser } from './middleware/auth';
import { createCsrf } from './middleware/csrf';
import { errorHandler, methodNotAllowed, notFound } from './middleware/errors';
import { flash } from './middleware/flash';
import { createRateLimits } from './middleware/rate-limit';
import { rejectOperatorKeys } from './middleware/reject-operators';
import { requestLog } from './middleware/request-log';
import { createUploadSlots } from './middleware/uploads';
import { publicDir, viewsDir } from './paths';
import { createServices, type Services } from './services';
import { createStores } from './store';
import { mountRoutes } from '../routes';
import { CHECK_IN_BATCH_PATH, checkInBatchBodyParser } from '../routes/check-ins';
import { EPCIS_CAPTURE_PATH, epcisCaptureBodyParser } from '../routes/epcis';
import { SELL_THROUGH_PATH, sellThroughBodyParser } from '../routes/partners';

export interface AppDeps {
  config: Config;
  db: Pick<Database, 'ping' | 'engine'>;
  clock: Clock;
  logger: Logger;
}

export type AppMiddleware = {
  csrf: ReturnType<typeof createCsrf>;
  limits: ReturnType<typeof createRateLimits>;
  /** Caps anonymous uploads in progress in this process, per client and in all. */
  uploadSlots: ReturnType<typeof createUploadSlots>;
};

/**
 * How long a client may take to send a whole request, and its headers. Applied by
 * server/index.ts to the HTTP server (`server.requestTimeout`, `server.headersTimeout`): a
 * 25 MB upload on a slow line fits in a minute; a client that trickles bytes to hold a
 * connection (and an upload slot) open is cut off then.
 */
export const REQUEST_TIMEOUT_MS = 60_000;
export const HEADERS_TIMEOUT_MS = 20_000;

/**
 * Responses that only their viewer should ever see are never kept by a browser or a proxy:
 * everything a signed-in user is sent (pages, exports, evidence downloads), and the reporting
 * channel's pages (whose follow-up shows a conversation to whoever holds the receipt).
 */
const PRIVATE_PAGES = ['/report', '/follow-up', '/api/v1/reports', '/api/v1/follow-up'];
const noStoreForPrivate: express.RequestHandler = (req, res, next) => {
  const path = req.path.toLowerCase();
  if (req.user || PRIVATE_PAGES.some((p) => path === p || path.startsWith(`${p}/`))) res.set('Cache-Control', 'no-store');
  next();
};

/** Builds the portal from its dependencies. Does not listen: server/index.ts does. */
export function createApp(deps: AppDeps): Express & { locals: { services: Services; middleware: AppMiddleware } } {
  const { config, logger } = deps;
  const stores = createStores(deps.db.engine);
  const services = createServices({ ...deps, stores });
  const app = express();
  app.locals.services = services;

  app.disable('x-powered-by');
  app.set('env', config.env);
  // Paths are matched exactly as written: see routes/router.ts for what folding case broke.
  app.set('case sensitive routing', true);
  app.set('trust proxy', config.trustProxy);
  app.set('view engine', 'ejs');
  app.set('views', viewsDir);

  app.use(requestLog(logger));
  app.use(methodNotAllowed);
  app.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'self'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'", 'data:'],
          fontSrc: ["'self'"],
          connectSrc: ["'self'"],
          formAction: ["'self'"],
          frameAncestors: ["'none'"],
          objectSrc: ["'none'"],
          baseUri: ["'none'"],
          ...(config.cookieSecure ? { upgradeInsecureRequests: [] } : {}),
        },
      },
      referrerPolicy: { policy: 'no-referrer' },
      strictTransportSecurity: config.cookieSecure,
    }),
  );
  app.use('/static', express.static(publicDir, { maxAge: config.env === 'production' ? '1d' : 0, index: false }));

  app.get('/healthz', (_req, res) => void res.json({ status: 'ok' }));
  app.get('/readyz', async (_req, res) => {
    const database = await deps.db.ping();
    // How far check-in summaries (and their red flags) trail the log: the summariser's progress.
    res.status(database ? 200 : 503).json({ ready: database, database, checkInSummaries: services.checkIns.backlog() });
  });

  const limit = `${config.bodyLimitKb}kb`;
  // A 1,000-item check-in batch or sell-through report needs more room than forms: its own parser runs first.
  app.use(CHECK_IN_BATCH_PATH, checkInBatchBodyParser);
  app.use(EPCIS_CAPTURE_PATH, epcisCaptureBodyParser);
  app.use(SELL_THROUGH_PATH, sellThroughBodyParser);
  app.use(express.json({ limit }));
  app.use(express.urlencoded({ extended: false, limit, parameterLimit: 200 }));
  app.use(cookieParser(config.jwt.secret));
  app.use(rejectOperatorKeys);
  app.use(loadUser(services.auth, config));

  const middleware: AppMiddleware = {
    csrf: createCsrf(config),
    limits: createRateLimits({ config, clock: deps.clock, limits: stores.limits, auth: services.auth }),
    uploadSlots: createUploadSlots({ perClient: config.uploads.atOncePerClient, total: config.uploads.atOnce }),
  };
  app.locals.middleware = middleware;
  app.use(noStoreForPrivate);
  app.use(middleware.limits.publicPost);
  app.use(middleware.csrf.middleware);
  app.use(flash(config));
  app.use((req, res, next) => {
    res.locals.currentPath = req.path;
    res.locals.user ??= req.user ?? null;
    res.locals.values = {};
    res.locals.errors = {};
    next();
  });

  mountRoutes(app, { config, services, middleware, clock: deps.clock });

  app.use(notFound);
  app.use(errorHandler(logger));
  return app as Express & { locals: { services: Services; middleware: AppMiddleware } };
}
