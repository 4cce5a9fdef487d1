import { epcOf } from '../insight/epcis';

/**
 * Leverage effects on a unit as EPCIS 2.0 ObjectEvents, in the export's mapping (what: the
 * unit's EPC; when: the action's time; why: a Downstream bizStep and disposition, since the
 * CBV has no words for firmware controls). Withholding updates is one event when the action is
 * recorded and one more when it stops being open (lifted, done or cancelled: the updates are
 * restored then); voiding a warranty is one event. Other leverage actions change nothing on
 * the unit and are not events of it. The case is named by its id, as parties are.
 */

export interface CaseWithActions {
  _id: string;
  actions: ReadonlyArray<{ _id: string; kind: string; status: string; target?: { unitIds?: readonly string[] } | null; createdAt: Date; updatedAt: Date }>;
}

export const LEVERAGE_BIZSTEPS = {
  withheld: 'urn:downstream:bizstep:updates-withheld',
  restored: 'urn:downstream:bizstep:updates-restored',
  voided: 'urn:downstream:bizstep:warranty-voided',
} as const;

export function leverageEpcisEvents(unitIdValue: string, cases: readonly CaseWithActions[]) {
  const epc = epcOf(unitIdValue);
  const event = (effect: keyof typeof LEVERAGE_BIZSTEPS, caseId: string, actionId: string, at: Date, disposition: string) => ({
    type: 'ObjectEvent' as const,
    eventID: `urn:downstream:event:${effect}:${actionId}:${unitIdValue}`,
    eventTime: at.toISOString(),
    eventTimeZoneOffset: '+00:00',
    epcList: [epc],
    action: 'OBSERVE' as const,
    bizStep: LEVERAGE_BIZSTEPS[effect],
    disposition,
    'downstream:caseId': caseId,
    'downstream:actionId': actionId,
  });
  return cases.flatMap((c) =>
    c.actions
      .filter((a) => a.target?.unitIds?.includes(unitIdValue))
      .flatMap((a) => {
        if (a.kind === 'void-warranty') return [event('voided', c._id, a._id, a.createdAt, 'urn:downstream:disp:warranty-void')];
        if (a.kind !== 'withhold-updates') return [];
        const withheld = event('withheld', c._id, a._id, a.createdAt, 'urn:downstream:disp:updates-withheld');
        return a.status === 'open' ? [withheld] : [withheld, event('restored', c._id, a._id, a.updatedAt, 'active')];
      }),
  );
}
