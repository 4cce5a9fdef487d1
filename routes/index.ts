import type { Express, Router as ExpressRouter } from 'express';
import { Router } from './router';
import type { RouteContext } from './context';
import { adminPages } from './admin';
import { auditApi, auditPages } from './audit';
import { apiKeysApi, authApi, authPages, usersApi } from './auth';
import { casePages, casesApi } from './cases';
import { cataloguePages, importsApi, modelsApi, unitsApi } from './catalogue';
import { certificatePages, certificatesApi } from './certificates';
import { checkInsApi } from './check-ins';
import { epcisApi } from './epcis';
import { flagPages, restrictedCountriesApi } from './flags';
import { dashboardApi, exportsApi, insightPages, transparencyApi } from './insight';
import { notificationPages, notificationsApi } from './notifications';
import { openapiApi } from './openapi';
import { partnerPages, partnerPortalPages, partnerRequestsApi, partnersApi, saleReviewsApi, sellThroughApi } from './partners';
import { publicPages } from './pages';
import { followUpApi, reportPages, reportsApi } from './reports';
import { webhookPages, webhooksApi } from './webhooks';
import { registrationPages, registrationsApi, transfersApi, unitTimelineApi } from './registrations';
import { screeningApi, screeningPages } from './screening';
import { verificationPages, visitsApi } from './verification';

/**
 * The API's modules and their prefixes under /api/v1. The OpenAPI test walks this list, so
 * every API route must be reachable from here.
 */
export function apiModules(ctx: RouteContext): Array<{ prefix: string; router: ExpressRouter }> {
  return [
    { prefix: '', router: openapiApi() },
    { prefix: '/auth', router: authApi(ctx) },
    { prefix: '/users', router: usersApi(ctx) },
    { prefix: '/api-keys', router: apiKeysApi(ctx) },
    { prefix: '/check-ins', router: checkInsApi(ctx) },
    { prefix: '/epcis', router: epcisApi(ctx) },
    { prefix: '/restricted-countries', router: restrictedCountriesApi(ctx) },
    { prefix: '/cases', router: casesApi(ctx) },
    { prefix: '/audit', router: auditApi(ctx) },
    { prefix: '/notifications', router: notificationsApi(ctx) },
    { prefix: '/reports', router: reportsApi(ctx) },
    { prefix: '/follow-up', router: followUpApi(ctx) },
    { prefix: '/models', router: modelsApi(ctx) },
    { prefix: '/units', router: unitsApi(ctx) },
    { prefix: '/units', router: unitTimelineApi(ctx) },
    { prefix: '/imports', router: importsApi(ctx) },
    { prefix: '/registrations', router: registrationsApi(ctx) },
    { prefix: '/transfers', router: transfersApi(ctx) },
    { prefix: '/transparency', router: transparencyApi(ctx) },
    { prefix: '/dashboard', router: dashboardApi(ctx) },
    { prefix: '/exports', router: exportsApi(ctx) },
    { prefix: '/screening', router: screeningApi(ctx) },
    { prefix: '/certificates', router: certificatesApi(ctx) },
    { prefix: '/visits', router: visitsApi(ctx) },
    { prefix: '/webhooks', router: webhooksApi(ctx) },
    { prefix: '/partners', router: partnersApi(ctx) },
    { prefix: '/sell-through', router: sellThroughApi(ctx) },
    { prefix: '/sale-reviews', router: saleReviewsApi(ctx) },
    { prefix: '/partner-requests', router: partnerRequestsApi(ctx) },
  ];
}

export function mountRoutes(app: Express, ctx: RouteContext) {
  // First: it puts the unread count in the navigation of every page after it.
  app.use(notificationPages(ctx));
  app.use(publicPages(ctx));
  app.use(authPages(ctx));
  app.use(adminPages(ctx));
  app.use(flagPages(ctx));
  app.use(casePages(ctx));
  app.use(auditPages(ctx));
  app.use(reportPages(ctx));
  app.use(cataloguePages(ctx));
  app.use(registrationPages(ctx));
  app.use(insightPages(ctx));
  app.use(screeningPages(ctx));
  app.use(certificatePages(ctx));
  app.use(verificationPages(ctx));
  app.use(webhookPages(ctx));
  app.use(partnerPages(ctx));
  app.use(partnerPortalPages(ctx));

  const api = Router();
  for (const { prefix, router } of apiModules(ctx)) api.use(prefix || '/', router);
  app.use('/api/v1', api);
}
