import type { Clock } from '../../clock';
import { isCountryCode } from '../../countries';
import { ValidationError } from '../../errors';
import type { Logger } from '../../logger';
import type { Page } from '../../middleware/validate';
import type { CasesStore } from '../../store/cases';
import type { CatalogueStore } from '../../store/catalogue';
import type { EpcisStore } from '../../store/epcis';
import type { InsightStore } from '../../store/insight';
import type { AuditService } from '../audit';
import type { FlagsService } from '../flags';
import type { EpcisQueryPush } from '../webhooks';
import { createCapture } from './capture';
import { createQuery } from './query';
import { createEpcResolver } from './resolver';

export { captureView } from './capture';

/**
 * EPCIS 2.0 for other systems: capture (capture.ts: schema-checked, idempotent by eventID,
 * processed in the background), queries and current state (query.ts), and the location master
 * data that places SGLNs and other location ids in countries.
 */
export function createEpcisService(deps: {
  clock: Clock;
  logger: Pick<Logger, 'info' | 'error'>;
  audit: AuditService;
  flags: FlagsService;
  webhooks: EpcisQueryPush;
  stores: { epcis: EpcisStore; catalogue: Pick<CatalogueStore, 'unitsByIds' | 'modelIdsByGtins' | 'recordFirstSale' | 'addUnitCountry'>; insight: Pick<InsightStore, 'unit' | 'historyOf'>; cases: Pick<CasesStore, 'casesOfUnit'> };
}) {
  const { clock, audit } = deps;
  const store = deps.stores.epcis;
  const resolveEpcs = createEpcResolver(deps.stores.catalogue);
  const capture = createCapture({ clock, logger: deps.logger, audit, flags: deps.flags, store, catalogue: deps.stores.catalogue, resolveEpcs, webhooks: deps.webhooks });
  const query = createQuery({ clock, store, insight: deps.stores.insight, cases: deps.stores.cases, resolveEpcs });

  return {
    ...capture,
    ...query,

    /** Places a location id (an SGLN, a GLN URI…) in a country, so captured events there count as being in it. */
    async setLocation(id: string, country: string, name: string, actor: { userId: string }) {
      const code = country.trim().toUpperCase();
      if (!isCountryCode(code)) throw new ValidationError({ country: 'Use an ISO 3166-1 alpha-2 country code, e.g. KE.' });
      const location = await store.setLocation(id, code, name, clock.now());
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'epcis.location-set', subjectKind: 'epcis-location', subjectId: id, detail: { country: code } });
      return location;
    },

    listLocations: (page: Page) => store.listLocations(page),

    /** The unit's captured events, newest last, as its summary holds them (the timeline's "external event" entries). */
    async capturedEventsOfUnit(unitIdValue: string) {
      return ((await store.unitEvents(unitIdValue))?.events ?? []).sort((a, b) => a.at.getTime() - b.at.getTime());
    },
  };
}

export type EpcisService = ReturnType<typeof createEpcisService>;
