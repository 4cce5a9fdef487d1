import crypto from 'node:crypto';
import type { Clock } from '../clock';
import type { Config } from '../config';
import type { UnitFinding, VisitStatus } from '../domain/verification';
import { ConflictError, NotFoundError, ValidationError } from '../errors';
import type { Page } from '../middleware/validate';
import type { CatalogueStore } from '../store/catalogue';
import type { VerificationStore, VisitDoc } from '../store/verification';
import type { AuditService } from './audit';
import type { FilesService, IncomingFile } from './files';
import type { FlagHit, FlagsService } from './flags';

/**
 * Post-shipment verification: investigators plan on-site visits (units, a site or a partner,
 * from a case or on their own), then record what they found. A unit not found, or found
 * somewhere else, raises the `verification-failed` red flag; a unit seen counts as verified.
 * Highest-risk units with no verification in VERIFICATION_DUE_MONTHS are due a visit.
 */

export interface VisitPlan {
  plannedFor: Date;
  inspector: string;
  site: string;
  partner?: string;
  caseId?: string;
  unitIds: string[];
  checklist: string[];
}

export interface OutcomeInput {
  units: Array<{ unitId: string; finding: UnitFinding; serialConfirmed: boolean; note: string }>;
  locationConfirmed: boolean;
  endUseConsistent: boolean;
  findings: string;
}

/** A unit a visit did not find where it should be. */
export function verificationFailed(visit: Pick<VisitDoc, '_id' | 'site'>, unit: { unitId: string; finding: UnitFinding; note: string }): FlagHit | null {
  if (unit.finding === 'seen') return null;
  return { rule: 'verification-failed', evidence: { visitId: visit._id, site: visit.site, finding: unit.finding, note: unit.note.slice(0, 500) } };
}

/** Units a visit may cover at once: a site's delivery, not a whole catalogue. */
export const MAX_UNITS_PER_VISIT = 200;

export function createVerificationService(deps: {
  config: Config;
  clock: Clock;
  audit: AuditService;
  files: FilesService;
  flags: Pick<FlagsService, 'raise'>;
  stores: { verification: VerificationStore; catalogue: Pick<CatalogueStore, 'unitsByIds'> };
}) {
  const { config, clock, audit, files, flags } = deps;
  const store = deps.stores.verification;

  async function getVisit(id: string) {
    const visit = await store.visitById(id);
    if (!visit) throw new NotFoundError('No such visit.');
    return visit;
  }

  return {
    getVisit,

    async plan(input: VisitPlan, byUserId: string) {
      const unitIds = [...new Set(input.unitIds)];
      const found = new Set((await deps.stores.catalogue.unitsByIds(unitIds, { _id: 1 })).map((u) => String(u._id)));
      const unknown = unitIds.filter((id) => !found.has(id));
      if (unknown.length) throw new ValidationError({ unitIds: `No such unit: ${unknown.slice(0, 5).join(', ')}${unknown.length > 5 ? ` and ${unknown.length - 5} more` : ''}.` });
      if (!unitIds.length && !input.partner) throw new ValidationError({ unitIds: 'Name the units to verify, or the partner whose site is visited.' });
      const visit = { _id: `vis_${crypto.randomBytes(10).toString('hex')}`, status: 'planned' as const, plannedFor: input.plannedFor, inspector: input.inspector, site: input.site, partner: input.partner ?? '', caseId: input.caseId ?? null, unitIds, checklist: input.checklist, plannedByUserId: byUserId, createdAt: clock.now() };
      await store.insertVisit(visit);
      await audit.record({ actorKind: 'user', actorId: byUserId, action: 'visit.planned', subjectKind: 'visit', subjectId: visit._id, detail: { plannedFor: input.plannedFor.toISOString().slice(0, 10), site: input.site, units: unitIds.length, caseId: visit.caseId } });
      return visit;
    },

    /**
     * The outcome of a planned visit, once. Every planned unit must be accounted for; photos
     * are stored like evidence (no embedded metadata).
     */
    async recordOutcome(id: string, input: OutcomeInput, photos: IncomingFile[], byUserId: string) {
      const visit = await getVisit(id);
      if (visit.status !== 'planned') throw new ConflictError('This visit\'s outcome has already been recorded.');
      const given = new Map(input.units.map((u) => [u.unitId, u]));
      const missing = visit.unitIds.filter((u) => !given.has(u));
      if (missing.length) throw new ValidationError({ units: `Say what the visit found of every unit it was to verify: ${missing.join(', ')}.` });
      const stored = [];
      for (const photo of photos) stored.push(await files.store(photo, 'photos'));
      const outcome = { recordedAt: clock.now(), byUserId, units: visit.unitIds.map((u) => given.get(u)!), locationConfirmed: input.locationConfirmed, endUseConsistent: input.endUseConsistent, findings: input.findings, photos: stored };
      const done = await store.recordOutcome(id, outcome);
      if (!done) {
        for (const f of stored) await files.remove(f.fileId);
        throw new ConflictError('This visit\'s outcome has already been recorded.');
      }
      const raised: string[] = [];
      for (const unit of outcome.units) {
        const hit = verificationFailed(visit, unit);
        if (hit) {
          await flags.raise(hit, { unitId: unit.unitId }, { kind: 'visit', id }, { id: `flg_${crypto.createHash('sha256').update(`verification-failed|${id}|${unit.unitId}`).digest('hex').slice(0, 20)}` });
          raised.push(unit.unitId);
        } else await store.markVerified(unit.unitId, outcome.recordedAt);
      }
      await audit.record({ actorKind: 'user', actorId: byUserId, action: 'visit.outcome-recorded', subjectKind: 'visit', subjectId: id, detail: { seen: outcome.units.length - raised.length, notFoundOrElsewhere: raised, locationConfirmed: input.locationConfirmed, endUseConsistent: input.endUseConsistent, photos: stored.length } });
      return { visit: done, flaggedUnits: raised };
    },

    list: (status: VisitStatus, page: Page) => store.visits(status, page),

    ofUnit: (unitId: string) => store.visitsOfUnit(unitId),

    dueMonths: config.verification.dueMonths,

    /**
     * The scheduling list: registered units of high-risk models not seen on a visit in
     * VERIFICATION_DUE_MONTHS, in unit order, a page at a time (`more`: another page follows).
     */
    async dueForVerification(page: Page) {
      const since = new Date(clock.now());
      since.setUTCMonth(since.getUTCMonth() - config.verification.dueMonths);
      const modelIds = await store.modelIdsOfRisk('high');
      const due: Array<{ unitId: string; modelId: string; country: string | null; owner: string; lastVerifiedAt: Date | null }> = [];
      let batch: Array<{ _id: string; modelId: string; current?: { country?: string | null; owner?: string | null } | null }> = [];
      const flush = async () => {
        const last = await store.lastVerified(batch.map((u) => u._id));
        batch.forEach((u, i) => {
          if (!last[i] || last[i]!.getTime() < since.getTime()) due.push({ unitId: u._id, modelId: u.modelId, country: u.current?.country ?? null, owner: u.current?.owner ?? '', lastVerifiedAt: last[i] ?? null });
        });
        batch = [];
      };
      if (modelIds.length) {
        await store.eachRegisteredUnitOf(modelIds, async (u) => {
          batch.push(u);
          if (batch.length >= 200) await flush();
          return due.length < page.skip + page.limit + 1;
        });
        await flush();
      }
      return { items: due.slice(page.skip, page.skip + page.limit), more: due.length > page.skip + page.limit, since };
    },
  };
}

export type VerificationService = ReturnType<typeof createVerificationService>;
