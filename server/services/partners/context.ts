import type { Clock } from '../../clock';
import type { Config } from '../../config';
import type { Logger } from '../../logger';
import { ForbiddenError, NotFoundError } from '../../errors';
import type { Stores } from '../../store';
import type { AuditService } from '../audit';
import type { AuthService } from '../auth';
import type { FlagHit, FlagsService } from '../flags';
import type { ScreeningService } from '../screening';

export interface PartnerDeps {
  config: Config;
  clock: Clock;
  logger?: Pick<Logger, 'error' | 'info'>;
  audit: AuditService;
  auth: Pick<AuthService, 'createUser' | 'createApiKey'>;
  flags: Pick<FlagsService, 'raise' | 'restrictedCountries'>;
  /** Partner records and sales' end customers are screened as registrations are. */
  screening: Pick<ScreeningService, 'screenRecord' | 'screenRecords'>;
  stores: Pick<Stores, 'partners' | 'catalogue' | 'flags' | 'cases'>;
}

/**
 * Who is acting: staff (admin, investigator) see every partner; a partner's user or API key
 * sees its partner and that partner's children, nothing else.
 */
export type PartnerActor = { kind: 'staff'; userId: string } | { kind: 'partner'; partnerId: string; userId: string | null; apiKeyId: string | null };

export const auditActor = (actor: PartnerActor) =>
  actor.kind === 'partner' && actor.apiKeyId ? { actorKind: 'api-key' as const, actorId: actor.apiKeyId } : { actorKind: 'user' as const, actorId: actor.userId };

/** The object-level check every partner route goes through. */
export function partnerScope(deps: PartnerDeps) {
  const store = deps.stores.partners;

  /** The partner ids `actor` may see, or null for staff (all). */
  async function visibleIds(actor: PartnerActor): Promise<string[] | null> {
    if (actor.kind === 'staff') return null;
    return [actor.partnerId, ...(await store.childrenOf(actor.partnerId)).map((c) => c._id)];
  }

  async function canSee(actor: PartnerActor, partnerId: string) {
    const ids = await visibleIds(actor);
    return ids === null || ids.includes(partnerId);
  }

  /** The partner, if `actor` may see it: 404 when there is none, 403 when it is another partner's. */
  async function visiblePartner(actor: PartnerActor, partnerId: string) {
    const partner = await store.partnerById(partnerId);
    if (!partner) throw new NotFoundError('No such partner.');
    if (!(await canSee(actor, partnerId))) throw new ForbiddenError('This partner is not yours.');
    return partner;
  }

  return { visibleIds, canSee, visiblePartner };
}

/**
 * Raises a diversion flag once per unit and rule (the flag's id says both), on the flag →
 * case path, and counts it on the partner's scorecard with the case it opened or joined.
 * `sourceId` names what showed it: the sale's key, or the unit for the sweep's rules.
 */
export function diversionFlagRaiser(deps: PartnerDeps) {
  return async function raiseOnce(hit: FlagHit, partnerId: string, unit: { _id: string; modelId: string; serial: string }, country: string, sourceId: string) {
    const id = `flg_${hit.rule}_${unit._id}`;
    if (await deps.stores.flags.caseIdOfFlag(id)) return false;
    const { caseId } = await deps.flags.raise({ ...hit, evidence: { ...hit.evidence, partnerId } }, { unitId: unit._id, modelId: unit.modelId, serial: unit.serial, country }, { kind: 'sale', id: sourceId }, { id });
    await deps.stores.partners.countPartnerFlag(partnerId, caseId);
    return true;
  };
}
