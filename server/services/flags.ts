import crypto from 'node:crypto';
import type { Clock } from '../clock';
import type { Config } from '../config';
import type { RiskLevel } from '../domain/catalogue';
import type { FlagRule, FlagSourceKind } from '../domain/flags';
import { HIGH_RISK_END_USER_TYPES, type EndUserType } from '../domain/registrations';
import type { AuditService } from './audit';
import type { Stores } from '../store';
import type { NewFlag } from '../store/flags';
import type { CasesService } from './cases';

/**
 * Red-flag rules (domain primer) as pure functions: each takes the facts it needs and returns
 * the hits with their evidence, or nothing. `raise` stores a hit and opens or updates the
 * case for it: the one cross-module effect of a flag.
 */

export interface FlagHit {
  rule: FlagRule;
  evidence: Record<string, unknown>;
}

/** Consecutive check-ins from a new country before a move counts as settled (not travel). */
export const SETTLED_AFTER_CHECK_INS = 3;

export const rules = {
  restrictedCountry(country: string | null | undefined, restricted: ReadonlySet<string>, where: 'registration' | 'transfer' | 'check-in'): FlagHit | null {
    if (!country || !restricted.has(country)) return null;
    return { rule: 'restricted-country', evidence: { country, where } };
  },

  highRiskEndUser(riskLevel: RiskLevel, endUserType: EndUserType | null | undefined): FlagHit | null {
    if (riskLevel !== 'high' || !endUserType || !HIGH_RISK_END_USER_TYPES.includes(endUserType)) return null;
    return { rule: 'high-risk-end-user', evidence: { riskLevel, endUserType } };
  },

  /**
   * `intendedUse` is what the customer chose from the model's intended uses, or 'other'.
   * Only models with a list of intended uses can be used outside it.
   */
  endUseOutsideIntended(intendedUses: readonly string[], intendedUse: string, declaredEndUse: string): FlagHit | null {
    if (intendedUses.length === 0) return null;
    const chosen = intendedUse.trim().toLowerCase();
    if (intendedUses.some((u) => u.trim().toLowerCase() === chosen)) return null;
    return { rule: 'end-use-outside-intended', evidence: { intendedUses: [...intendedUses], chosen: intendedUse, declaredEndUse: declaredEndUse.slice(0, 500) } };
  },

  /** A check-in from elsewhere than the country the unit is registered (or moved) to. */
  countryMismatch(checkInCountry: string, currentCountry: string | null | undefined): FlagHit | null {
    if (!currentCountry || checkInCountry === currentCountry) return null;
    return { rule: 'country-mismatch', evidence: { checkInCountry, registeredCountry: currentCountry } };
  },

  /** A catalogued unit checking in with no registration; or a serial the catalogue lacks. */
  unregisteredCheckIn(unit: { status: string } | null, serial: string, modelSku: string): FlagHit | null {
    if (!unit) return { rule: 'unknown-serial', evidence: { serial, modelSku } };
    if (unit.status === 'unregistered') return { rule: 'unregistered-check-in', evidence: { serial, modelSku } };
    return null;
  },

  /** A misuse report naming a catalogued unit or model (the linker's direct links). */
  misuseReport(named: { unitId?: string | null; modelId?: string | null }, harmCategories: readonly string[]): FlagHit | null {
    if (!named.unitId && !named.modelId) return null;
    return { rule: 'misuse-report', evidence: { names: named.unitId ? 'unit' : 'model', harmCategories: [...harmCategories] } };
  },

  /**
   * The unit's latest run of check-ins has settled in a country that no registration or
   * transfer (effective or pending) told us about.
   */
  unnotifiedTransfer(
    lastRun: { country: string; count: number; firstAt: Date } | null | undefined,
    knownCountries: ReadonlySet<string>,
  ): FlagHit | null {
    if (!lastRun || lastRun.count < SETTLED_AFTER_CHECK_INS || knownCountries.has(lastRun.country)) return null;
    return { rule: 'unnotified-transfer', evidence: { country: lastRun.country, checkIns: lastRun.count, since: lastRun.firstAt.toISOString() } };
  },
};

/** Where the unit was told to be: by its first sale, registrations, transfers (effective or pending). */
export function knownCountries(
  unit: { current?: { country?: string | null } | null; countries?: ReadonlyArray<{ country: string; source: string }> },
  pendingTransferCountries: readonly string[],
): Set<string> {
  const told = (unit.countries ?? []).filter((c) => c.source !== 'check-in').map((c) => c.country);
  return new Set([...told, ...(unit.current?.country ? [unit.current.country] : []), ...pendingTransferCountries]);
}

export interface FlagSubject {
  unitId?: string | null;
  modelId?: string | null;
  serial?: string | null;
  country?: string | null;
}

/** How long an instance may go on using the restricted-country list it read. */
const RESTRICTED_CACHE_MS = 10_000;

/** What raised a flag: the record it was found in. */
export type FlagSource = { kind: FlagSourceKind; id: string };

/** A hit to raise; `id`, when given, makes raising it idempotent (see `raiseMany`). */
export interface FlagToRaise {
  hit: FlagHit;
  subject: FlagSubject;
  source: FlagSource;
  id?: string;
}

export function createFlagsService(deps: { clock: Clock; config: Config; cases: CasesService; audit: AuditService; stores: Pick<Stores, 'flags'> }) {
  const { clock, config, cases, audit } = deps;
  const store = deps.stores.flags;
  // Read on every registration, transfer and check-in, so cached; another instance's change
  // shows here within RESTRICTED_CACHE_MS (monotonic time: a bound on staleness, not a rule).
  let restricted: Promise<Set<string>> | null = null;
  let readAt = 0;

  const flagDoc = (id: string, { hit, subject, source }: FlagToRaise, caseId: string): NewFlag => ({
    _id: id,
    rule: hit.rule,
    unitId: subject.unitId ?? null,
    modelId: subject.modelId ?? null,
    serial: subject.serial ?? null,
    country: subject.country ?? null,
    evidence: hit.evidence,
    source,
    caseId,
    raisedAt: clock.now(),
  });

  /**
   * Stores hits and opens or updates their cases (one open case per unit and rule), all in a
   * few bulk commands: a fold of check-ins raises hundreds at once. A hit with an `id` already
   * raised is returned as it is (the check-in summariser derives it from the check-in and the
   * rule, so folding a batch again after a crash raises nothing twice). A flag is stored only
   * after its case holds it, so a stored flag has its case; the case's update carries the
   * flag.raised webhook event. Returns each hit's flag and case, in order.
   */
  async function raiseMany(items: readonly FlagToRaise[]): Promise<Array<{ flagId: string; caseId: string }>> {
    const ids = items.map((item) => item.id ?? `flg_${crypto.randomBytes(10).toString('hex')}`);
    const given = [...new Set(items.flatMap((item) => (item.id ? [item.id] : [])))];
    const caseOfGiven = await store.caseIdsOfFlags(given);
    const caseOf = new Map(given.flatMap((id, i) => (caseOfGiven[i] ? [[id, caseOfGiven[i]] as const] : [])));
    // The new ones, each id once (a hit named twice in one call is one flag).
    const fresh = [...new Map(items.map((item, i) => [ids[i]!, item] as const)).entries()].filter(([id]) => !caseOf.has(id));
    if (fresh.length) {
      const caseIds = await cases.openOrUpdateForFlags(fresh.map(([id, { hit, subject, source }]) => ({ id, rule: hit.rule, source: source.kind, ...subject })));
      fresh.forEach(([id], i) => caseOf.set(id, caseIds[i]!));
      await store.insertFlags(fresh.map(([id, item]) => flagDoc(id, item, caseOf.get(id)!)));
    }
    return ids.map((id) => ({ flagId: id, caseId: caseOf.get(id)! }));
  }

  return {
    rules,

    /** The restricted-country list: the admin's setting, or RESTRICTED_COUNTRIES until one is saved. */
    restrictedCountries(): Promise<Set<string>> {
      if (!restricted || performance.now() - readAt > RESTRICTED_CACHE_MS) {
        readAt = performance.now();
        restricted = store
          .restrictedCountriesSetting()
          .then((saved) => new Set(saved ?? config.restrictedCountries))
          .catch((err: unknown) => {
            restricted = null;
            throw err;
          });
      }
      return restricted;
    },

    async setRestrictedCountries(countries: string[], byUserId: string | null) {
      const list = [...new Set(countries.map((c) => c.trim().toUpperCase()))].sort();
      await store.saveRestrictedCountries(list, clock.now(), byUserId);
      restricted = null;
      await audit.record({ actorKind: byUserId ? 'user' : 'system', actorId: byUserId, action: 'restricted-countries.changed', subjectKind: 'setting', subjectId: 'restricted-countries', detail: { countries: list } });
      return list;
    },

    raiseMany,

    /** One hit, as `raiseMany` raises it. */
    async raise(hit: FlagHit, subject: FlagSubject, source: FlagSource, given?: { id: string }) {
      const [raised] = await raiseMany([{ hit, subject, source, id: given?.id }]);
      return raised!;
    },

    /**
     * A hit whose case already exists: a misuse report opens or joins its case itself (with the
     * reporting deadlines a flag case lacks), so its flag is stored on that case rather than
     * opening a second one. Idempotent by `id`.
     */
    async recordOnCase(hit: FlagHit, subject: FlagSubject, source: { kind: 'report'; id: string }, caseId: string, id: string) {
      await store.insertFlag(flagDoc(id, { hit, subject, source }, caseId));
      return { flagId: id, caseId };
    },

    /** Raises every non-null hit; returns the rules that fired. */
    async raiseAll(hits: Array<FlagHit | null>, subject: FlagSubject, source: FlagSource) {
      const fired = hits.filter((hit): hit is FlagHit => !!hit);
      await raiseMany(fired.map((hit) => ({ hit, subject, source })));
      return fired.map((hit) => hit.rule);
    },
  };
}

export type FlagsService = ReturnType<typeof createFlagsService>;
