import type { Clock } from '../clock';
import { NotFoundError } from '../errors';
import { Case, Counter, OpenCaseKey, type CaseDoc } from '../../models/cases';
import type { FlagRule } from '../../models/flags';

const DAY = 86_400_000;
/** EU Whistleblower Directive: acknowledge within 7 days, feedback within 3 months of that. */
export const ACKNOWLEDGE_WITHIN_DAYS = 7;
export const FEEDBACK_WITHIN_MONTHS = 3;
/** Flag-only cases get a review date instead. */
export const REVIEW_WITHIN_DAYS = 30;

export function addMonths(date: Date, months: number): Date {
  const d = new Date(date);
  d.setUTCMonth(d.getUTCMonth() + months);
  return d;
}

export interface CaseSubject {
  unitId?: string | null;
  modelId?: string | null;
  serial?: string | null;
  country?: string | null;
}

export function createCasesService(deps: { clock: Clock }) {
  const { clock } = deps;

  async function nextCaseId(now: Date): Promise<string> {
    const year = now.getUTCFullYear();
    const counter = await Counter.findOneAndUpdate({ _id: `case-${year}` }, { $inc: { seq: 1 } }, { upsert: true, new: true }).lean();
    return `C-${year}-${String(counter!.seq).padStart(6, '0')}`;
  }

  /**
   * Attaches a source to the open case under `key`, or opens one. Uniqueness of the key's
   * `_id` decides races: of two concurrent openers, one inserts the key and the other attaches.
   */
  async function openOrAttach(
    key: string,
    source: { kind: 'flag' | 'report'; id: string; rule: FlagRule | null },
    subject: CaseSubject,
    init: { title: string; deadlines: CaseDoc['deadlines'] },
  ): Promise<{ caseId: string; opened: boolean }> {
    const now = clock.now();
    const sourceDoc = { ...source, at: now };
    const addSubject = {
      sources: sourceDoc,
      sourceKinds: source.kind,
      ...(source.rule ? { rules: source.rule } : {}),
      ...(subject.unitId ? { unitIds: subject.unitId } : {}),
      ...(subject.modelId ? { modelIds: subject.modelId } : {}),
      ...(subject.country ? { countries: subject.country } : {}),
    };

    for (let attempt = 0; attempt < 3; attempt++) {
      const existing = await OpenCaseKey.findById(key).lean();
      if (existing) {
        const { sources, ...sets } = addSubject;
        const updated = await Case.updateOne(
          { _id: existing.caseId, status: { $ne: 'closed' } },
          {
            $push: { sources, history: { at: now, byUserId: null, action: 'source-added', detail: `${source.kind} ${source.id}` } },
            $addToSet: sets,
            $set: { updatedAt: now },
          },
        );
        if (updated.matchedCount === 1) return { caseId: existing.caseId, opened: false };
        // The case closed under us: drop the stale key and open a new case.
        await OpenCaseKey.deleteOne({ _id: key, caseId: existing.caseId });
        continue;
      }
      const caseId = await nextCaseId(now);
      try {
        await OpenCaseKey.create({ _id: key, caseId });
      } catch (err) {
        if ((err as { code?: number }).code === 11000) continue; // someone else opened it
        throw err;
      }
      await Case.create({
        _id: caseId,
        title: init.title,
        status: 'new',
        sources: [sourceDoc],
        sourceKinds: [source.kind],
        rules: source.rule ? [source.rule] : [],
        unitIds: subject.unitId ? [subject.unitId] : [],
        modelIds: subject.modelId ? [subject.modelId] : [],
        countries: subject.country ? [subject.country] : [],
        deadlines: init.deadlines,
        openedAt: now,
        updatedAt: now,
        history: [{ at: now, byUserId: null, action: 'opened', detail: `${source.kind} ${source.id}` }],
      });
      return { caseId, opened: true };
    }
    throw new Error(`could not open or attach a case for ${key}`);
  }

  const subjectKey = (subject: CaseSubject) =>
    subject.unitId ? `unit:${subject.unitId}` : subject.serial ? `serial:${subject.serial}` : `model:${subject.modelId ?? 'none'}`;

  return {
    /** A raised red flag: one open case per unit (or serial) and rule; further hits add to it. */
    async openOrUpdateForFlag(flag: { id: string; rule: FlagRule } & CaseSubject) {
      const now = clock.now();
      const what = flag.unitId ?? flag.serial ?? flag.modelId ?? 'unknown unit';
      return openOrAttach(`${subjectKey(flag)}|${flag.rule}`, { kind: 'flag', id: flag.id, rule: flag.rule }, flag, {
        title: `Red flag ${flag.rule} on ${what}`,
        deadlines: { acknowledgeBy: null, feedbackBy: null, reviewBy: new Date(now.getTime() + REVIEW_WITHIN_DAYS * DAY) },
      });
    },

    /**
     * A misuse report: attached to the open report case of the same unit, or a new case with
     * the Whistleblower Directive's deadlines.
     */
    async openOrAttachForReport(report: { id: string; receivedAt: Date; title: string } & CaseSubject) {
      const acknowledgeBy = new Date(report.receivedAt.getTime() + ACKNOWLEDGE_WITHIN_DAYS * DAY);
      const key = report.unitId ? `unit:${report.unitId}|report` : `report:${report.id}`;
      return openOrAttach(key, { kind: 'report', id: report.id, rule: null }, report, {
        title: report.title,
        deadlines: { acknowledgeBy, feedbackBy: addMonths(acknowledgeBy, FEEDBACK_WITHIN_MONTHS), reviewBy: null },
      });
    },

    async getCase(id: string) {
      const found = await Case.findById(id).lean();
      if (!found) throw new NotFoundError('No such case.');
      return found;
    },
  };
}

export type CasesService = ReturnType<typeof createCasesService>;
