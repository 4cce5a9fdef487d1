import fs from 'node:fs';
import path from 'node:path';
import YAML from 'yaml';
import { openapiDir } from './paths';

type Doc = { paths?: Record<string, unknown>; components?: { schemas?: Record<string, unknown> } } & Record<string, unknown>;

/**
 * The OpenAPI 3.1 document: `openapi/openapi.yaml` plus one fragment per module
 * (`openapi/<module>.yaml`, each with `paths` and `components.schemas`), so a module's routes
 * and their documentation change together. test/openapi.test.ts holds the two in step.
 */
export function loadOpenApi(): Doc {
  const base = YAML.parse(fs.readFileSync(path.join(openapiDir, 'openapi.yaml'), 'utf8')) as Doc;
  base.paths ??= {};
  base.components ??= {};
  base.components.schemas ??= {};
  const fragments = fs.readdirSync(openapiDir).filter((f) => f.endsWith('.yaml') && f !== 'openapi.yaml').sort();
  for (const file of fragments) {
    const part = YAML.parse(fs.readFileSync(path.join(openapiDir, file), 'utf8')) as Doc;
    for (const [p, item] of Object.entries(part.paths ?? {})) {
      if (base.paths[p]) throw new Error(`openapi/${file}: path ${p} is already defined`);
      base.paths[p] = item;
    }
    for (const [name, schema] of Object.entries(part.components?.schemas ?? {})) {
      if (base.components.schemas[name]) throw new Error(`openapi/${file}: schema ${name} is already defined`);
      base.components.schemas[name] = schema;
    }
  }
  return base;
}
