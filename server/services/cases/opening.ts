import type { FlagRule, FlagSourceKind } from '../../domain/flags';
import type { OutboxEvent } from '../../store/webhooks';
import { webhookEvent } from '../webhooks';
import type { CaseDeps } from './context';
import type { CaseNotices } from './notices';
import { flagDeadlines, reportDeadlines } from './rules';

/**
 * Opening cases: a raised flag or a misuse report opens a case, or joins the open case of the
 * same subject. "One open case per unit and rule" is a key with a unique `_id`
 * (`unit:<unitId>|<rule>`, `serial:<serial>|<rule>`, `unit:<unitId>|report`, `report:<id>`),
 * so of two concurrent openers in any processes one inserts the key and the other attaches.
 */

export interface CaseSubject {
  unitId?: string | null;
  modelId?: string | null;
  serial?: string | null;
  country?: string | null;
}

const subjectKey = (subject: CaseSubject) =>
  subject.unitId ? `unit:${subject.unitId}` : subject.serial ? `serial:${subject.serial}` : `model:${subject.modelId ?? 'none'}`;

/** `C-2026-000123`: the year's counter, incremented atomically. */
export function caseNumbers(deps: Pick<CaseDeps, 'stores'>) {
  return async function nextCaseId(now: Date): Promise<string> {
    const year = now.getUTCFullYear();
    return `C-${year}-${String(await deps.stores.cases.nextCaseNumber(year)).padStart(6, '0')}`;
  };
}

export function caseOpening(deps: Pick<CaseDeps, 'clock' | 'stores'>, notices: Pick<CaseNotices, 'opened' | 'reportAdded'>) {
  const { clock } = deps;
  const store = deps.stores.cases;
  const nextCaseId = caseNumbers(deps);

  /** Attaches a source to the open case under `key`, or opens one. */
  async function openOrAttach(
    key: string,
    source: { kind: 'flag' | 'report'; id: string; rule: FlagRule | null },
    subject: CaseSubject,
    init: { title: string; deadlines: { acknowledgeBy: Date | null; feedbackBy: Date | null; reviewBy: Date | null } },
    /** The webhook events of the source itself (flag.raised, report.received), written with the case. */
    announce: (caseId: string) => OutboxEvent[],
  ): Promise<{ caseId: string; opened: boolean }> {
    const now = clock.now();
    const sourceDoc = { ...source, at: now };
    const line = { at: now, byUserId: null, detail: `${source.kind} ${source.id}` };
    for (let attempt = 0; attempt < 3; attempt++) {
      const existing = await store.caseIdUnderKey(key);
      if (existing) {
        const subjects = {
          ...(source.rule ? { rules: source.rule } : {}),
          ...(subject.unitId ? { unitIds: subject.unitId } : {}),
          ...(subject.modelId ? { modelIds: subject.modelId } : {}),
          ...(subject.country ? { countries: subject.country } : {}),
        };
        if (await store.attachSource(existing, sourceDoc, subjects, { ...line, action: 'source-added' }, announce(existing))) {
          if (source.kind === 'report') await notices.reportAdded(existing);
          return { caseId: existing, opened: false };
        }
        // The case closed under us: drop the stale key and open a new case.
        await store.dropStaleKey(key, existing);
        continue;
      }
      const caseId = await nextCaseId(now);
      if (!(await store.claimKey(key, caseId))) continue; // someone else opened it
      await store.insertCase({
        _id: caseId,
        title: init.title,
        sources: [sourceDoc],
        sourceKinds: [source.kind],
        rules: source.rule ? [source.rule] : [],
        unitIds: subject.unitId ? [subject.unitId] : [],
        modelIds: subject.modelId ? [subject.modelId] : [],
        countries: subject.country ? [subject.country] : [],
        deadlines: init.deadlines,
        openedAt: now,
        history: [{ ...line, action: 'opened' }],
        pendingEvents: [webhookEvent('case.opened', caseId, { caseId, openedAt: now.toISOString(), source: source.kind, rule: source.rule }, now), ...announce(caseId)],
      });
      await notices.opened(caseId, init.title, source.kind);
      return { caseId, opened: true };
    }
    throw new Error(`could not open or attach a case for ${key}`);
  }

  return {
    /** A raised red flag: one open case per unit (or serial) and rule; further hits add to it. */
    openOrUpdateForFlag(flag: { id: string; rule: FlagRule; source: FlagSourceKind } & CaseSubject) {
      const what = flag.unitId ?? flag.serial ?? flag.modelId ?? 'unknown unit';
      const now = clock.now();
      const raised = (caseId: string) => [
        webhookEvent('flag.raised', flag.id, { flagId: flag.id, rule: flag.rule, caseId, unitId: flag.unitId ?? null, modelId: flag.modelId ?? null, country: flag.country ?? null, source: flag.source, raisedAt: now.toISOString() }, now),
      ];
      return openOrAttach(`${subjectKey(flag)}|${flag.rule}`, { kind: 'flag', id: flag.id, rule: flag.rule }, flag, { title: `Red flag ${flag.rule} on ${what}`, deadlines: flagDeadlines(now) }, raised);
    },

    /**
     * A misuse report: attached to the open report case of the same unit, or a new case with
     * the Whistleblower Directive's deadlines.
     */
    openOrAttachForReport(report: { id: string; receivedAt: Date; title: string } & CaseSubject) {
      const key = report.unitId ? `unit:${report.unitId}|report` : `report:${report.id}`;
      // Only the case and the time: nothing of what the reporter wrote leaves the portal.
      const received = (caseId: string) => [webhookEvent('report.received', report.id, { caseId, receivedAt: report.receivedAt.toISOString() }, report.receivedAt)];
      return openOrAttach(key, { kind: 'report', id: report.id, rule: null }, report, { title: report.title, deadlines: reportDeadlines(report.receivedAt) }, received);
    },
  };
}
