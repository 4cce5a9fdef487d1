import type { CatalogueStore } from '../store/catalogue';
import type { RegistrationsStore } from '../store/registrations';
import { normaliseCode } from './catalogue/codes';

/**
 * Matches what a reporter wrote to the catalogue: exact serial → unit (and its current
 * registration), model name or SKU → model, country → registrations of those models there.
 * The rules are pure functions over plain facts; `createLinkerService` reads the facts through
 * the stores, by `_id` wherever the hot path allows.
 */

/** What a link points at, and how sure the linker is (the reports' schema stores both). */
export type LinkKind = 'unit' | 'model' | 'registration' | 'country';
export type Confidence = 'high' | 'medium' | 'low';

export interface LinkProposal {
  kind: LinkKind;
  targetId: string;
  confidence: Confidence;
  reason: string;
}

export interface ModelFacts {
  _id: string;
  name: string;
  publicName?: string | null;
}

export interface UnitFacts {
  _id: string;
  modelId: string;
  serial: string;
  registrationId?: string | null;
  countries?: Array<{ country: string }>;
  current?: { country?: string | null } | null;
}

/** How many of each the linker proposes at most: a vague report must not link half the catalogue. */
export const MAX_SERIALS = 20;
export const MAX_MODEL_LINKS = 5;
export const MAX_REGISTRATION_LINKS = 20;
/** The models collection is small; this only bounds a runaway catalogue. */
export const MAX_MODELS_SCANNED = 5000;

const RANK: Record<Confidence, number> = { high: 3, medium: 2, low: 1 };
const comparable = (s: string) => s.trim().toLowerCase().replace(/\s+/g, ' ');

/** Model links from the reporter's free text: SKU or exact name first, then a resemblance. */
export function matchModels(modelText: string, models: readonly ModelFacts[]): LinkProposal[] {
  const text = comparable(modelText);
  if (!text) return [];
  const sku = normaliseCode(modelText);
  const found = new Map<string, LinkProposal>();
  const add = (id: string, confidence: Confidence, reason: string) => {
    const had = found.get(id);
    if (!had || RANK[confidence] > RANK[had.confidence]) found.set(id, { kind: 'model', targetId: id, confidence, reason });
  };
  for (const m of models) {
    const names = [m.name, m.publicName ?? ''].map(comparable).filter(Boolean);
    if (m._id === sku) add(m._id, 'high', `SKU "${m._id}" named in the report`);
    else if (names.includes(text)) add(m._id, 'high', `model name "${modelText.trim()}" named in the report`);
    else if (text.length >= 3 && names.some((n) => n.includes(text) || text.includes(n))) add(m._id, 'low', `model name resembles "${modelText.trim()}"`);
  }
  return [...found.values()].sort((a, b) => RANK[b.confidence] - RANK[a.confidence]).slice(0, MAX_MODEL_LINKS);
}

/**
 * Unit links for one exact serial. Serials are unique per model only, so a serial carried by
 * several units is certain only where the reported model agrees; the report's country in the
 * unit's history is given as a reason an investigator can weigh.
 */
export function matchUnits(serial: string, units: readonly UnitFacts[], reportedModelIds: ReadonlySet<string>, country: string): LinkProposal[] {
  const links: LinkProposal[] = [];
  for (const unit of units) {
    const modelAgrees = reportedModelIds.has(unit.modelId);
    const confidence: Confidence =
      modelAgrees || (units.length === 1 && reportedModelIds.size === 0) ? 'high' : units.length === 1 ? 'medium' : 'low';
    const seenThere = (unit.countries ?? []).some((c) => c.country === country) || unit.current?.country === country;
    const why = [`serial ${serial} matches exactly`, modelAgrees ? 'model agrees' : null, seenThere ? `unit known in ${country}` : null].filter(Boolean).join('; ');
    links.push({ kind: 'unit', targetId: unit._id, confidence, reason: why });
    if (unit.registrationId) {
      links.push({ kind: 'registration', targetId: unit.registrationId, confidence, reason: `current registration of unit ${unit._id}` });
    }
  }
  return links;
}

/** Registrations of the reported models in the report's country: weak, but worth a look. */
export function matchCountryRegistrations(
  registrations: ReadonlyArray<{ _id: string; modelId: string; unitId: string }>,
  country: string,
): LinkProposal[] {
  return registrations.map((r) => ({
    kind: 'registration' as const,
    targetId: r._id,
    confidence: 'low' as const,
    reason: `unit ${r.unitId} of model ${r.modelId} is registered in ${country}`,
  }));
}

/** One link per (kind, target), keeping the most confident. */
export function mergeLinks(links: readonly LinkProposal[]): LinkProposal[] {
  const byKey = new Map<string, LinkProposal>();
  for (const link of links) {
    const key = `${link.kind}|${link.targetId}`;
    const had = byKey.get(key);
    if (!had || RANK[link.confidence] > RANK[had.confidence]) byKey.set(key, link);
  }
  return [...byKey.values()];
}

/**
 * What the case is about: the unit when exactly one unit is the most confident match (two
 * equally likely units would attach the report to the wrong unit's case), and its model or
 * the best model link.
 */
export function caseSubject(links: readonly Pick<LinkProposal, 'kind' | 'targetId' | 'confidence'>[], unitModel: (unitId: string) => string | undefined) {
  const best = (kind: LinkKind) => {
    const of = links.filter((l) => l.kind === kind);
    const top = Math.max(0, ...of.map((l) => RANK[l.confidence]));
    const atTop = of.filter((l) => RANK[l.confidence] === top);
    return atTop.length === 1 ? atTop[0]!.targetId : null;
  };
  const unitId = best('unit');
  const modelId = (unitId ? unitModel(unitId) : undefined) ?? best('model');
  return { unitId, modelId: modelId ?? null };
}

export interface LinkInput {
  serials: readonly string[];
  modelText: string;
  country: string;
}

export interface LinkResult {
  links: LinkProposal[];
  unitId: string | null;
  modelId: string | null;
}

/**
 * What the second, slower step still has to look up for a report: active registrations of
 * these models in this country. Derived from the links alone (models linked with more than
 * low confidence, which includes the model of every matched unit), so a report saved with
 * this step pending carries everything needed to finish it, even after a restart.
 */
export interface CountryQuery {
  modelIds: string[];
  country: string;
}

export function countryQueryOf(links: readonly Pick<LinkProposal, 'kind' | 'targetId' | 'confidence'>[], country: string): CountryQuery | null {
  const modelIds = [...new Set(links.filter((l) => l.kind === 'model' && l.confidence !== 'low').map((l) => l.targetId))];
  return modelIds.length ? { modelIds, country } : null;
}

export function createLinkerService(deps: { stores: { catalogue: Pick<CatalogueStore, 'modelNames' | 'unitIdsWithSerial' | 'unitsByIds'>; registrations: Pick<RegistrationsStore, 'activeRegistrationsIn'> } }) {
  const { catalogue, registrations } = deps.stores;

  /**
   * The first step, on the request path: serial → unit → registration by `_id`, and the model
   * text against the small models collection. Decides the case subject, which the country step
   * never changes (it adds only low-confidence registration links).
   */
  async function linkDirect(input: LinkInput): Promise<LinkResult & { pending: CountryQuery | null }> {
    const { country } = input;
    const modelText = input.modelText.trim();
    const models: ModelFacts[] = modelText ? await catalogue.modelNames(MAX_MODELS_SCANNED) : [];
    const modelLinks = matchModels(modelText, models);
    const reportedModelIds = new Set(modelLinks.filter((l) => l.confidence === 'high').map((l) => l.targetId));

    const unitLinks: LinkProposal[] = [];
    const unitModels = new Map<string, string>();
    for (const serial of [...new Set(input.serials.map(normaliseCode))].filter(Boolean).slice(0, MAX_SERIALS)) {
      const units: UnitFacts[] = await catalogue.unitsByIds(await catalogue.unitIdsWithSerial(serial), { modelId: 1, serial: 1, registrationId: 1, countries: 1, current: 1 });
      for (const u of units) unitModels.set(u._id, u.modelId);
      unitLinks.push(...matchUnits(serial, units, reportedModelIds, country));
    }

    const links = mergeLinks([
      ...unitLinks,
      ...modelLinks,
      ...[...unitModels.values()].map((m) => ({ kind: 'model' as const, targetId: m, confidence: 'medium' as const, reason: 'model of a unit whose serial matches' })),
      { kind: 'country', targetId: country, confidence: 'high', reason: 'country where the reporter says it happened' },
    ]);
    return { links, ...caseSubject(links, (id) => unitModels.get(id)), pending: countryQueryOf(links, country) };
  }

  /**
   * The second step, for many reports at once: registrations of their models in their
   * countries, at most MAX_REGISTRATION_LINKS each, as low-confidence links (`result[i]` for
   * `queries[i]`). It runs off the request path, where one read of each model-and-country
   * list serves every report waiting for it.
   */
  async function registrationLinksFor(queries: readonly CountryQuery[]): Promise<LinkProposal[][]> {
    const found: Array<Array<{ _id: string; modelId: string; unitId: string }>> = queries.map(() => []);
    const open = new Set(queries.map((_, i) => i));
    const countries = [...new Set(queries.map((q) => q.country))];
    const modelIds = [...new Set(queries.flatMap((q) => q.modelIds))];
    if (!queries.length || !modelIds.length) return found.map(() => []);
    await registrations.activeRegistrationsIn(countries, modelIds, (r) => {
      for (const i of open) {
        const q = queries[i]!;
        if (q.country !== r.country || !q.modelIds.includes(r.modelId)) continue;
        found[i]!.push(r);
        if (found[i]!.length >= MAX_REGISTRATION_LINKS) open.delete(i);
      }
      return open.size > 0;
    });
    return found.map((regs, i) => matchCountryRegistrations(regs, queries[i]!.country));
  }

  return {
    linkDirect,
    registrationLinksFor,

    /** Both steps at once (scripts, tests): what a report ends up linked to. */
    async linkReport(input: LinkInput): Promise<LinkResult> {
      const { pending, ...direct } = await linkDirect(input);
      if (!pending) return direct;
      const [extra] = await registrationLinksFor([pending]);
      return { ...direct, links: mergeLinks([...direct.links, ...extra!]) };
    },
  };
}

export type LinkerService = ReturnType<typeof createLinkerService>;
