import fs from 'node:fs';
import path from 'node:path';
import { type Request, type RequestHandler } from 'express';
import { Router } from './router';
import multer from 'multer';
import { z } from 'zod';
import { CAPABILITIES, RISK_LEVELS } from '../server/domain/catalogue';
import { COUNTRY_OPTIONS, isCountryCode } from '../server/countries';
import { ValidationError } from '../server/errors';
import { requireRole } from '../server/middleware/auth';
import { formAction } from '../server/middleware/forms';
import { pagination, parseBody, parseQuery, requiredText, shortText, toPage, pageBody } from '../server/middleware/validate';
import { multipart } from '../server/middleware/uploads';
import { IMPORT_HEADER, parseDay } from '../server/services/catalogue';
import type { RouteContext } from './context';
import { labelled } from './form-labels';

// ----- shared field shapes (also used by routes/registrations.ts) -----

/** ISO 3166-1 alpha-2, checked against the real list. */
export const countryCode = z
  .string('Choose a country.')
  .trim()
  .toUpperCase()
  .refine(isCountryCode, 'Choose a country from the list (ISO 3166-1 alpha-2 code, e.g. KE).');

/** `YYYY-MM-DD`, a real calendar day. */
export const dayField = (label: string) =>
  z.union([z.string(), z.date()], `${label}: enter a date as YYYY-MM-DD.`).transform((v, c) => {
    const d = v instanceof Date ? v : parseDay(v);
    if (!d || Number.isNaN(d.getTime())) {
      c.addIssue({ code: 'custom', message: `${label}: enter a date as YYYY-MM-DD.` });
      return z.NEVER;
    }
    return d;
  });
const optionalDay = (label: string) =>
  z
    .string()
    .trim()
    .max(30)
    .optional()
    .transform((v, c) => {
      if (!v) return null;
      const d = parseDay(v);
      if (!d) {
        c.addIssue({ code: 'custom', message: `${label}: enter a date as YYYY-MM-DD.` });
        return z.NEVER;
      }
      return d;
    });
const optionalCountry = z
  .string()
  .trim()
  .toUpperCase()
  .optional()
  .refine((v) => !v || isCountryCode(v), 'Choose a country from the list (ISO 3166-1 alpha-2 code, e.g. KE).')
  .transform((v) => v || null);

/** A list from an API array, form checkboxes (one value or several) or a textarea (one per line). */
const listOf = <T extends z.ZodType>(item: T) =>
  z.preprocess((v) => (typeof v === 'string' ? v.split(/\r?\n/).map((s) => s.trim()).filter(Boolean) : v), z.array(item));

// ----- inputs -----

const modelFields = {
  name: requiredText(200, 'Name'),
  category: requiredText(100, 'Category'),
  riskLevel: z.enum(RISK_LEVELS, 'Choose a risk level: low, elevated or high.'),
  capabilities: listOf(z.enum(CAPABILITIES, `Capabilities are among: ${CAPABILITIES.join(', ')}.`)).default([]),
  intendedUses: listOf(shortText(200, 'An intended use')).default([]).refine((l) => l.length <= 50, 'At most 50 intended uses.'),
  publicName: shortText(200, 'Public name').optional(),
  gtin: shortText(20, 'GTIN').optional(),
};
export const modelInput = z.object({ sku: requiredText(64, 'SKU'), ...modelFields, endUseTerms: shortText(20_000, 'End-use terms').optional() });
const modelEdit = z.object(modelFields);
const modelPatch = z
  .object({ ...modelFields, capabilities: modelFields.capabilities.unwrap(), intendedUses: listOf(shortText(200, 'An intended use')) })
  .partial()
  .strict();
const termsInput = z.object({ text: requiredText(20_000, 'End-use terms') });

const unitFields = {
  manufacturedAt: optionalDay('Manufacture date'),
  channelPartner: shortText(200, 'Channel partner').optional(),
  shipToCountry: optionalCountry,
  soldAt: optionalDay('Sale date'),
};
const unitForm = z.object({ serial: requiredText(64, 'Serial number'), ...unitFields });
export const unitInput = unitForm.extend({ sku: requiredText(64, 'SKU') });
const unitPatch = z.object(unitFields).partial().strict();
const serialQuery = z.object({ serial: requiredText(64, 'Serial number') });

const toUnitInput = (i: z.infer<typeof unitForm>) => ({
  manufacturedAt: i.manufacturedAt,
  firstSale: { channelPartner: i.channelPartner ?? '', shipToCountry: i.shipToCountry, soldAt: i.soldAt },
});
const toUnitChanges = (i: z.infer<typeof unitPatch>) => ({
  manufacturedAt: i.manufacturedAt,
  firstSale: { channelPartner: i.channelPartner, shipToCountry: i.shipToCountry, soldAt: i.soldAt },
});

// ----- output shapes -----

type LeanModel = Awaited<ReturnType<RouteContext['services']['catalogue']['getModel']>>;
type LeanUnit = Awaited<ReturnType<RouteContext['services']['catalogue']['getUnit']>>;
type LeanJob = Awaited<ReturnType<RouteContext['services']['catalogue']['getImport']>>;

export const publicModel = (m: LeanModel) => ({
  sku: m._id,
  skuAsTyped: m.sku,
  name: m.name,
  category: m.category,
  riskLevel: m.riskLevel,
  capabilities: m.capabilities,
  intendedUses: m.intendedUses,
  publicName: m.publicName ?? m.name,
  gtin: m.gtin ?? null,
  endUseTerms: m.endUseTerms.map((t) => ({ version: t.version, text: t.text, publishedAt: t.publishedAt })),
  unitCount: m.unitCount ?? 0,
  createdAt: m.createdAt,
  updatedAt: m.updatedAt,
});

export const publicUnit = (u: LeanUnit) => ({
  id: u._id,
  modelSku: u.modelId,
  serial: u.serial,
  manufacturedAt: u.manufacturedAt ?? null,
  firstSale: u.firstSale,
  status: u.status,
  registrationId: u.registrationId ?? null,
  current: u.current,
  countries: u.countries,
  checkIns: { count: u.checkIns?.count ?? 0, lastAt: u.checkIns?.lastAt ?? null, lastCountry: u.checkIns?.lastCountry ?? null, lastFirmware: u.checkIns?.lastFirmware ?? null },
  controls: { updates: u.controls?.updates ?? 'allowed', warranty: u.controls?.warranty ?? 'valid' },
  createdAt: u.createdAt,
});

const publicJob = (j: LeanJob) => ({
  id: j._id,
  fileName: j.fileName,
  status: j.status,
  counts: j.counts,
  rowErrors: j.rowErrors ?? [],
  failure: j.failure ?? null,
  startedAt: j.startedAt,
  finishedAt: j.finishedAt ?? null,
});

// ----- CSV upload -----

/** CSV files are streamed from a temporary file, never held in memory; this bounds the disk. */
export const MAX_IMPORT_BYTES = 100 * 1024 * 1024;

/**
 * Multer to a temporary file under the data directory (the import then reads it as a stream),
 * then the CSRF check for page forms. Whatever happens, the temporary name is gone once the
 * response is sent; an import in progress keeps reading through its open handle.
 */
function csvUpload(ctx: RouteContext, opts: { csrf: boolean }): RequestHandler[] {
  const dir = path.join(ctx.config.dataDir, 'tmp-imports');
  const parser = multer({ dest: dir, limits: { fileSize: MAX_IMPORT_BYTES, files: 1, fields: 10 } }).single('file');
  const cleanUp: RequestHandler = (req, res, next) => {
    res.on('finish', () => {
      if (req.file?.path) fs.promises.rm(req.file.path, { force: true }).catch(() => undefined);
    });
    fs.promises.mkdir(dir, { recursive: true }).then(() => next(), next);
  };
  return opts.csrf ? [cleanUp, ...multipart(parser), ctx.middleware.csrf.protect] : [cleanUp, ...multipart(parser)];
}

const uploadedCsv = (req: Request) => {
  if (!req.file) throw new ValidationError({ file: `Choose a CSV file whose first line is: ${IMPORT_HEADER}` });
  return req.file;
};

const actorOf = (req: Request) => ({ userId: req.user!.id });

// ----- pages -----

/** The catalogue forms' labels (see ./form-labels); a model's page holds three forms, whose fields differ. */
const modelFieldLabels = {
  name: 'Name',
  publicName: 'Public name',
  gtin: 'GTIN',
  category: 'Category',
  riskLevel: 'Risk level',
  capabilities: 'Capabilities',
  intendedUses: 'Intended uses',
};
const unitFieldLabels = {
  manufacturedAt: 'Manufacture date',
  channelPartner: 'First sale: channel partner',
  shipToCountry: 'First sale: ship-to country',
  soldAt: 'First sale: date',
};
const newModelLabels = { sku: 'SKU', ...modelFieldLabels, endUseTerms: 'End-use terms (version 1)' };
const modelPageLabels = { ...modelFieldLabels, serial: 'Serial number', ...unitFieldLabels, text: 'Publish a new version' };
const importLabels = { file: 'CSV file' };

export function cataloguePages(ctx: RouteContext) {
  const { services } = ctx;
  const router = Router();
  const admin = requireRole('admin');
  const catalogue = services.catalogue;
  const formOptions = { riskLevels: RISK_LEVELS, capabilities: CAPABILITIES, countries: COUNTRY_OPTIONS };

  const modelsPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await catalogue.listModels(page);
    return { title: 'Catalogue', models: items, total, page, ...formOptions };
  };

  router.get('/admin/catalogue', admin, labelled(newModelLabels), async (req, res) => res.render('catalogue/models', await modelsPage(req)));

  router.post(
    '/admin/catalogue/models',
    admin,
    labelled(newModelLabels),
    formAction('catalogue/models', modelsPage, async (req, res) => {
      const model = await catalogue.createModel(parseBody(modelInput, req), actorOf(req));
      res.flash(`Product model ${model._id} created.`);
      res.redirect(303, `/admin/catalogue/models/${encodeURIComponent(model._id)}`);
    }),
  );

  const modelPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const model = await catalogue.getModel(String(String(req.params.modelId)));
    const { items, total } = await catalogue.listUnits(model._id, page);
    return { title: `Model ${model._id}`, model, units: items, total, page, ...formOptions };
  };

  router.get('/admin/catalogue/models/:modelId', admin, labelled(modelPageLabels), async (req, res) => {
    const locals = await modelPage(req);
    const m = locals.model;
    res.render('catalogue/model', { ...locals, values: { ...m, capabilities: m.capabilities, intendedUses: m.intendedUses.join('\n') } });
  });

  router.post(
    '/admin/catalogue/models/:modelId',
    admin,
    labelled(modelPageLabels),
    formAction('catalogue/model', modelPage, async (req, res) => {
      const model = await catalogue.updateModel(String(req.params.modelId), parseBody(modelEdit, req), actorOf(req));
      res.flash('The model was saved.');
      res.redirect(303, `/admin/catalogue/models/${encodeURIComponent(model._id)}`);
    }),
  );

  router.post(
    '/admin/catalogue/models/:modelId/terms',
    admin,
    labelled(modelPageLabels),
    formAction('catalogue/model', modelPage, async (req, res) => {
      const terms = await catalogue.publishTerms(String(req.params.modelId), parseBody(termsInput, req).text, actorOf(req));
      res.flash(`End-use terms version ${terms.version} published. Earlier registrations keep the version they accepted.`);
      res.redirect(303, `/admin/catalogue/models/${encodeURIComponent(terms.modelId)}`);
    }),
  );

  router.post(
    '/admin/catalogue/models/:modelId/units',
    admin,
    labelled(modelPageLabels),
    formAction('catalogue/model', modelPage, async (req, res) => {
      const input = parseBody(unitForm, req);
      const unit = await catalogue.createUnit({ sku: String(req.params.modelId), serial: input.serial, ...toUnitInput(input) }, actorOf(req));
      res.flash(`Unit ${unit._id} added.`);
      res.redirect(303, `/admin/catalogue/models/${encodeURIComponent(unit.modelId)}`);
    }),
  );

  const unitPage = async (req: Request) => ({ title: 'Unit', unit: await catalogue.getUnit(String(String(req.params.unitId))), ...formOptions });

  router.get('/admin/catalogue/units/:unitId', admin, labelled(unitFieldLabels), async (req, res) => {
    const locals = await unitPage(req);
    const u = locals.unit;
    const day = (d: Date | null | undefined) => (d ? d.toISOString().slice(0, 10) : '');
    res.render('catalogue/unit', {
      ...locals,
      values: { manufacturedAt: day(u.manufacturedAt), channelPartner: u.firstSale?.channelPartner ?? '', shipToCountry: u.firstSale?.shipToCountry ?? '', soldAt: day(u.firstSale?.soldAt) },
    });
  });

  router.post(
    '/admin/catalogue/units/:unitId',
    admin,
    labelled(unitFieldLabels),
    formAction('catalogue/unit', unitPage, async (req, res) => {
      // The form always sends every field: an emptied one clears the value.
      const input = parseBody(z.object(unitFields), req);
      const unit = await catalogue.updateUnit(String(req.params.unitId), { ...toUnitInput({ serial: '', ...input }) }, actorOf(req));
      res.flash('The unit was saved.');
      res.redirect(303, `/admin/catalogue/units/${encodeURIComponent(unit._id)}`);
    }),
  );

  const importsPage = async (req: Request) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await catalogue.listImports(page);
    return { title: 'Import units', jobs: items, total, page, header: IMPORT_HEADER, maxMb: MAX_IMPORT_BYTES / 1024 / 1024 };
  };

  router.get('/admin/catalogue/import', admin, labelled(importLabels), async (req, res) => res.render('catalogue/imports', await importsPage(req)));

  router.post(
    '/admin/catalogue/import',
    admin,
    labelled(importLabels),
    ...csvUpload(ctx, { csrf: true }),
    formAction('catalogue/imports', importsPage, async (req, res) => {
      const file = uploadedCsv(req);
      const { job } = await catalogue.startImport(file.path, file.originalname, actorOf(req));
      res.redirect(303, `/admin/catalogue/import/${job._id}`);
    }),
  );

  router.get('/admin/catalogue/import/:jobId', admin, async (req, res) => {
    const job = await catalogue.getImport(String(String(req.params.jobId)));
    // Progress without JavaScript: the page reloads itself every 2 s while the import runs.
    if (job.status === 'running') res.set('Refresh', '2');
    res.render('catalogue/import', { title: 'Import progress', job });
  });

  return router;
}

// ----- API -----

const staff = requireRole('admin', 'investigator');
const adminOnly = requireRole('admin');

export function modelsApi({ services }: RouteContext) {
  const router = Router();
  const catalogue = services.catalogue;

  router.get('/', staff, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await catalogue.listModels(page);
    res.json(pageBody(items.map(publicModel), total, page));
  });

  router.post('/', adminOnly, async (req, res) => {
    res.status(201).json({ model: publicModel(await catalogue.createModel(parseBody(modelInput.strict(), req), actorOf(req))) });
  });

  router.get('/:modelId', staff, async (req, res) => {
    res.json({ model: publicModel(await catalogue.getModel(String(req.params.modelId))) });
  });

  router.patch('/:modelId', adminOnly, async (req, res) => {
    res.json({ model: publicModel(await catalogue.updateModel(String(req.params.modelId), parseBody(modelPatch, req), actorOf(req))) });
  });

  router.post('/:modelId/terms', adminOnly, async (req, res) => {
    res.status(201).json({ terms: await catalogue.publishTerms(String(req.params.modelId), parseBody(termsInput.strict(), req).text, actorOf(req)) });
  });

  router.get('/:modelId/units', staff, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await catalogue.listUnits(String(req.params.modelId), page);
    res.json(pageBody(items.map(publicUnit), total, page));
  });

  return router;
}

export function unitsApi({ services }: RouteContext) {
  const router = Router();
  const catalogue = services.catalogue;

  /** Units by bare serial: several models may share a serial. */
  router.get('/', staff, async (req, res) => {
    const { serial } = parseQuery(serialQuery, req);
    res.json({ items: (await catalogue.findBySerial(serial)).map(publicUnit) });
  });

  router.post('/', adminOnly, async (req, res) => {
    const input = parseBody(unitInput.strict(), req);
    res.status(201).json({ unit: publicUnit(await catalogue.createUnit({ sku: input.sku, serial: input.serial, ...toUnitInput(input) }, actorOf(req))) });
  });

  router.get('/:unitId', staff, async (req, res) => {
    res.json({ unit: publicUnit(await catalogue.getUnit(String(req.params.unitId))) });
  });

  router.patch('/:unitId', adminOnly, async (req, res) => {
    res.json({ unit: publicUnit(await catalogue.updateUnit(String(req.params.unitId), toUnitChanges(parseBody(unitPatch, req)), actorOf(req))) });
  });

  return router;
}

export function importsApi(ctx: RouteContext) {
  const router = Router();
  const catalogue = ctx.services.catalogue;

  router.post('/', adminOnly, ...csvUpload(ctx, { csrf: false }), async (req, res) => {
    const file = uploadedCsv(req);
    const { job } = await catalogue.startImport(file.path, file.originalname, actorOf(req));
    res.status(202).location(`/api/v1/imports/${job._id}`).json({ import: publicJob(job) });
  });

  router.get('/', adminOnly, async (req, res) => {
    const page = toPage(parseQuery(pagination, req));
    const { items, total } = await catalogue.listImports(page);
    res.json(pageBody(items.map(publicJob), total, page));
  });

  router.get('/:importId', adminOnly, async (req, res) => {
    res.json({ import: publicJob(await catalogue.getImport(String(req.params.importId))) });
  });

  return router;
}
