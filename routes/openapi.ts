import { Router } from './router';
import { loadOpenApi } from '../server/openapi';

export function openapiApi() {
  const router = Router();
  const doc = loadOpenApi();
  router.get('/openapi.json', (_req, res) => void res.json(doc));
  return router;
}
