import type { Clock } from '../../clock';
import type { HitDecision, ScreenedSubjectKind } from '../../domain/screening';
import { ConflictError, NotFoundError } from '../../errors';
import type { ScreeningStore } from '../../store/screening';
import type { AuditService } from '../audit';
import type { FlagsService } from '../flags';
import { clearanceKey } from './matching';

/**
 * The review of screening hits: an investigator decides each hit, with a reason, audited.
 * - true match: the `restricted-party` red flag is raised on the unit, which opens its case;
 *   the record stays held, for the case to decide.
 * - false positive: remembered for this party and entity as they are now, and the record is
 *   released once none of its hits is open or confirmed.
 */

/** What the review needs of the registrations and partners modules: to let a held record take effect. */
export interface ScreeningPorts {
  releaseRegistration(registrationId: string, byUserId: string): Promise<void>;
  releaseSale(saleKey: string, byUserId: string): Promise<void>;
}

/** The held records a cleared hit lets take effect (a held resale waits for its approval on /admin/transfers). */
const RELEASE = { registration: 'releaseRegistration', sale: 'releaseSale' } as const satisfies Partial<Record<ScreenedSubjectKind, keyof ScreeningPorts>>;

export function createScreeningReview(deps: { clock: Clock; audit: AuditService; flags: Pick<FlagsService, 'raise'>; ports: ScreeningPorts; stores: { screening: ScreeningStore } }) {
  const { clock, audit, flags, ports } = deps;
  const store = deps.stores.screening;

  async function hit(id: string) {
    const found = await store.hitById(id);
    if (!found) throw new NotFoundError('No such screening hit.');
    return found;
  }

  return {
    hit,

    async decide(id: string, decision: HitDecision, reason: string, byUserId: string) {
      await hit(id);
      const decided = await store.decideHit(id, decision, { byUserId, at: clock.now(), reason });
      if (!decided) throw new ConflictError('This hit has already been decided.');
      let caseId: string | null = null;
      if (decision === 'true-match') {
        const { entity, party, subject } = decided;
        ({ caseId } = await flags.raise(
          { rule: 'restricted-party', evidence: { partyName: party.name, role: subject.role, listId: entity.listId, listName: entity.listName, entityId: entity.entityId, entityName: (decided.explanation as { entityName?: string }).entityName ?? entity.names[0], score: decided.score, programs: entity.programs, hitId: id, reason } },
          { unitId: subject.unitId, country: party.country },
          { kind: subject.kind, id: subject.id },
        ));
        await store.setHitCase(id, caseId);
      } else {
        await store.recordClearance(clearanceKey(decided), { hitId: id, reason, byUserId, at: clock.now() });
        const others = await store.hitsOfSubject(decided.subject.kind, decided.subject.id);
        const release = RELEASE[decided.subject.kind as keyof typeof RELEASE] as (typeof RELEASE)[keyof typeof RELEASE] | undefined;
        if (decided.held && release && others.every((h) => h.status === 'false-positive')) await ports[release](decided.subject.id, byUserId);
      }
      await audit.record({ actorKind: 'user', actorId: byUserId, action: `screening.${decision}`, subjectKind: 'screening-hit', subjectId: id, detail: { subject: decided.subject, listId: decided.entity.listId, entityId: decided.entity.entityId, score: decided.score, reason, caseId } });
      return { ...decided, caseId };
    },
  };
}

export type ScreeningReview = ReturnType<typeof createScreeningReview>;
