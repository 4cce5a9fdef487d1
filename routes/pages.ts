import { Router } from './router';
import type { RouteContext } from './context';

/**
 * Public URLs whose features arrive with their own modules. Until a module mounts its real
 * page here, the URL answers honestly that the feature is not available yet.
 */
const UPCOMING: Record<string, string> = {};

export function publicPages(_ctx: RouteContext) {
  const router = Router();
  router.get('/', (_req, res) => res.render('home', { title: 'Downstream' }));
  // Browsers ask for /favicon.ico whatever the page links; the icon is the SVG the pages name.
  router.get('/favicon.ico', (_req, res) => res.redirect(301, '/static/favicon.svg'));
  for (const [path, title] of Object.entries(UPCOMING)) {
    router.get(path, (_req, res) => res.status(503).render('upcoming', { title }));
  }
  return router;
}
