import { Unit } from '../../models/catalogue';
import { tallyUnits, unitStateChange } from './insight';
import { ClaimKey, CustomerRegistrations, Registration, RegistrationPlace, Transfer } from '../../models/registrations';
import { byIds, existingByIds } from './by-ids';
import { chunksOf, type Engine, isDuplicateKey } from './engine';

/**
 * Registrations, transfers, the claim keys that decide races between them, each customer's
 * registration list (CustomerRegistrations, see CONTRIBUTING.md "Stored shape"), and what
 * they change on the unit summary. Every write is one single-document atomic update, guarded
 * where it was decided on a read, or an insert whose unique `_id` decides a race. Every change
 * of a unit's status or `current.country` is passed on to the dashboard's tallies
 * (`tallyUnits`, owned by insight) with the values the write replaced.
 */

const registrationById = (id: string) => Registration.findById(id).lean();
const transferById = (id: string) => Transfer.findById(id).lean();
export type LeanRegistration = NonNullable<Awaited<ReturnType<typeof registrationById>>>;
export type LeanTransfer = NonNullable<Awaited<ReturnType<typeof transferById>>>;
export type NewRegistration = Omit<LeanRegistration, 'status' | 'warranty' | 'customerUserId' | '__v'> & { customerUserId: string };
export type NewTransfer = Omit<LeanTransfer, 'decision' | 'requestedByUserId' | 'newOwner' | '__v'> & { requestedByUserId: string; newOwner: { organisation?: string; contactName?: string; contactEmail?: string; endUserType?: string } };

/** The unit's summary as it was before a write: what the dashboard's tallies move from. */
type UnitBefore = { modelId: string; status?: string | null; current?: { country?: string | null } | null };

/** More than a report is ever linked to (MAX_REGISTRATION_LINKS), few enough to read in one go. */
export const REGISTRATION_PLACE_MAX = 200;

export function createRegistrationsStore(engine: Engine) {
  async function tallyMove(before: UnitBefore | null, after: { status: string; country: string | null }) {
    if (before) await tallyUnits([unitStateChange(before.modelId, { status: before.status, country: before.current?.country }, after)]);
  }

  /** A registration joins its model and country's list while it is active (see RegistrationPlace). */
  const placeOf = (r: { modelId: string; country: string }) => `${r.modelId}|${r.country}`;
  async function addToPlace(r: { _id: string; modelId: string; country: string; unitId: string }) {
    const add = () =>
      RegistrationPlace.updateOne({ _id: placeOf(r), 'registrations._id': { $ne: r._id } }, { $push: { registrations: { $each: [{ _id: r._id, unitId: r.unitId }], $slice: -REGISTRATION_PLACE_MAX } } }, { upsert: true });
    // The guard makes a repeat add nothing; an upsert racing a first insert, or matching an
    // existing list that already holds the id, collides on `_id`: both are fine.
    await add().catch((err: unknown) => {
      if (!isDuplicateKey(err)) throw err;
    });
  }
  // The whole element, as stored: the embedded engine's `$pull` compares elements for equality
  // rather than as a query on their fields.
  const removeFromPlace = (r: { _id: string; modelId: string; country: string; unitId: string }) =>
    RegistrationPlace.updateOne({ _id: placeOf(r) }, { $pull: { registrations: { _id: r._id, unitId: r.unitId } } });

  return {
    // ----- registrations -----

    registrationById,

    registrationsByIds: (ids: readonly string[]) => existingByIds<LeanRegistration>(engine, Registration as never, ids),

    /** False when a registration with this `_id` exists already (an earlier attempt, or a rival). */
    async insertRegistration(doc: NewRegistration): Promise<boolean> {
      try {
        await Registration.create(doc);
      } catch (err) {
        if (isDuplicateKey(err)) return false;
        throw err;
      }
      await addToPlace(doc);
      return true;
    },

    async deleteRegistration(id: string) {
      const gone = await Registration.findOneAndDelete({ _id: id }).lean();
      if (gone) await removeFromPlace(gone);
    },

    /**
     * Inserts a race-deciding key (models/registrations.ts, ClaimKey): null if we won it, else
     * whom it already went to.
     */
    async claim(key: string, ref: string, at: Date): Promise<string | null> {
      try {
        await ClaimKey.create({ _id: key, ref, at });
        return null;
      } catch (err) {
        if (!isDuplicateKey(err)) throw err;
        return (await ClaimKey.findById(key).lean())?.ref ?? 'unknown';
      }
    },

    /**
     * Makes `registrationId` the unit's effective registration, once only (a concurrent
     * submission of this same registration may have applied it already): false if it had.
     */
    async applyRegistration(unitId: string, registrationId: string, ownerUserId: string, current: { country: string; region: string; owner: string; endUserType: string; since: Date }): Promise<boolean> {
      const before = await Unit.findOneAndUpdate(
        { _id: unitId, registrationId: { $ne: registrationId } },
        {
          $set: { status: 'registered', registrationId, ownerUserId, current, updatedAt: current.since },
          $push: { countries: { country: current.country, source: 'registration', firstSeen: current.since, lastSeen: current.since }, registrationIds: registrationId },
        },
        // The unit as it was: the values replaced, for the tallies (FerretDB v1 has no projection here).
        { new: false },
      ).lean();
      await tallyMove(before, { status: 'registered', country: current.country });
      return before !== null;
    },

    /** Marks a registration's warranty; the unit control follows only while it is the unit's effective one. */
    async setWarranty(registrationId: string, warranty: string): Promise<LeanRegistration | null> {
      const registration = await Registration.findOneAndUpdate({ _id: registrationId }, { $set: { warranty } }, { new: true }).lean();
      if (registration) await Unit.updateOne({ _id: registration.unitId, registrationId }, { $set: { 'controls.warranty': warranty } });
      return registration;
    },

    // ----- customers' registration lists -----

    /** A customer's registration ids, oldest first: one `_id` read. */
    async customerRegistrationIds(userId: string): Promise<string[]> {
      return (await CustomerRegistrations.findById(userId).lean())?.registrationIds ?? [];
    },

    /** Adds to a customer's list: one atomic `$addToSet`, so a repeat adds nothing. */
    async addToCustomer(userId: string, registrationId: string) {
      const add = () => CustomerRegistrations.updateOne({ _id: userId }, { $addToSet: { registrationIds: registrationId } }, { upsert: true });
      // Two first registrations of one customer may both try to create the list: the loser's retry is an update.
      await add().catch((err: unknown) => {
        if (!isDuplicateKey(err)) throw err;
        return add();
      });
    },

    /** Rebuilds every customer's list from the registrations (a repair; oldest first). */
    async rebuildCustomerLists(): Promise<number> {
      const lists = new Map<string, string[]>();
      for await (const r of Registration.find({}, { customerUserId: 1 }).sort({ createdAt: 1 }).lean().cursor({ batchSize: 1_000 })) {
        const key = String(r.customerUserId);
        lists.set(key, [...(lists.get(key) ?? []), r._id]);
      }
      for (const chunk of chunksOf([...lists])) {
        await CustomerRegistrations.bulkWrite(chunk.map(([_id, registrationIds]) => ({ updateOne: { filter: { _id }, update: { $set: { registrationIds } }, upsert: true } })), { ordered: false });
      }
      return lists.size;
    },

    // ----- transfers -----

    transferById,

    transfersByIds: (ids: readonly string[]) => existingByIds<LeanTransfer>(engine, Transfer as never, ids),

    async insertTransfer(doc: NewTransfer) {
      await Transfer.create(doc);
    },

    async deleteTransfer(id: string) {
      await Transfer.deleteOne({ _id: id });
    },

    /** Adds a transfer to the unit's list and, when it waits for approval, marks the unit pending. */
    async recordTransferOnUnit(unitId: string, transferId: string, pendingSince: Date | null) {
      const before = await Unit.findOneAndUpdate({ _id: unitId }, { $push: { transferIds: transferId }, ...(pendingSince ? { $set: { status: 'transfer-pending', updatedAt: pendingSince } } : {}) }, { new: false }).lean();
      if (pendingSince) await tallyMove(before, { status: 'transfer-pending', country: before?.current?.country ?? null });
    },

    /**
     * Decides a pending transfer: one write guarded by its status, so of two deciders exactly
     * one matches. Null when it was no longer pending.
     */
    decideTransfer: (id: string, status: 'effective' | 'refused', decision: { byUserId: string; at: Date; reason: string }): Promise<LeanTransfer | null> =>
      Transfer.findOneAndUpdate({ _id: id, status: 'pending' }, { $set: { status, decision } }, { new: true }).lean(),

    /**
     * What an effective transfer does to the unit summary, guarded by the registration and
     * status the caller expects (a unit changed meanwhile is not overwritten: false). A resale
     * also supersedes the registration.
     */
    async applyTransferToUnit(transfer: { unitId: string; registrationId: string }, expectStatus: string, set: Record<string, unknown> & { status: string; 'current.country': string }, moved: { country: string; at: Date }, resale: boolean): Promise<boolean> {
      const before = await Unit.findOneAndUpdate(
        { _id: transfer.unitId, registrationId: transfer.registrationId, status: expectStatus },
        { $set: { ...set, updatedAt: moved.at }, $push: { countries: { country: moved.country, source: 'transfer', firstSeen: moved.at, lastSeen: moved.at } } },
        { new: false },
      ).lean();
      if (!before) return false;
      await tallyMove(before, { status: set.status, country: moved.country });
      if (resale) {
        const superseded = await Registration.findOneAndUpdate({ _id: transfer.registrationId }, { $set: { status: 'superseded' } }, { new: true }).lean();
        if (superseded) await removeFromPlace(superseded);
      }
      return true;
    },

    /** A refused transfer puts a still-pending unit back to registered. */
    async unitBackToRegistered(unitId: string, at: Date) {
      const refused = await Unit.findOneAndUpdate({ _id: unitId, status: 'transfer-pending' }, { $set: { status: 'registered', updatedAt: at } }, { new: false }).lean();
      if (refused) await tallyUnits([{ modelId: refused.modelId, transferPending: -1 }]);
    },

    /** Pending transfers, oldest first (the staff queue). Transfers are a small collection. */
    async pendingTransfers(page: { skip: number; limit: number }) {
      const filter = { status: 'pending' };
      const [items, total] = await Promise.all([Transfer.find(filter).sort({ createdAt: 1 }).skip(page.skip).limit(page.limit).lean(), Transfer.countDocuments(filter)]);
      return { items, total };
    },

    /** Where a unit's pending transfers would take it (transfers are a small collection). */
    async pendingTransferCountries(unitId: string): Promise<string[]> {
      const transfers = await Transfer.find({ unitId, status: 'pending' }, { 'newLocation.country': 1 }).lean();
      return transfers.flatMap((t) => (t.newLocation?.country ? [t.newLocation.country] : []));
    },

    /**
     * Active registrations of these models in these countries, newest first, one at a time to
     * `take` until it returns false: one `_id` read of each model-and-country list.
     */
    async activeRegistrationsIn(countries: readonly string[], modelIds: readonly string[], take: (r: { _id: string; modelId: string; unitId: string; country: string }) => boolean) {
      const places = modelIds.flatMap((modelId) => countries.map((country) => ({ modelId, country })));
      const lists = await byIds<{ _id: string; registrations: Array<{ _id: string; unitId: string }> }>(engine, RegistrationPlace as never, places.map(placeOf));
      for (const [i, list] of lists.entries()) {
        const { modelId, country } = places[i]!;
        // Newest first: the registrations a report most likely concerns.
        for (const r of [...(list?.registrations ?? [])].reverse()) if (!take({ _id: r._id, unitId: r.unitId, modelId, country })) return;
      }
    },

    /** Rebuilds every model-and-country list from the active registrations (a repair, and data loaded outside the app). */
    async rebuildPlaceLists(progress?: (n: number) => void): Promise<number> {
      // Ordered here, list by list: a sort of every registration by the engine took more than a
      // minute at 150,000 on the embedded engine, past the driver's socket timeout.
      const lists = new Map<string, Array<{ _id: string; unitId: string; createdAt: Date }>>();
      let n = 0;
      for await (const r of Registration.find({ status: 'active' }, { modelId: 1, country: 1, unitId: 1, createdAt: 1 }).lean().cursor({ batchSize: 1_000 })) {
        const key = placeOf(r);
        const list = lists.get(key) ?? [];
        list.push({ _id: r._id, unitId: r.unitId, createdAt: r.createdAt });
        lists.set(key, list);
        if (++n % 50_000 === 0) progress?.(n);
      }
      const newest = (list: Array<{ _id: string; unitId: string; createdAt: Date }>) =>
        list
          .sort((a, b) => a.createdAt.getTime() - b.createdAt.getTime() || (a._id < b._id ? -1 : 1))
          .slice(-REGISTRATION_PLACE_MAX)
          .map(({ _id, unitId }) => ({ _id, unitId }));
      await RegistrationPlace.deleteMany({});
      for (const chunk of chunksOf([...lists])) {
        await RegistrationPlace.bulkWrite(chunk.map(([_id, list]) => ({ updateOne: { filter: { _id }, update: { $set: { registrations: newest(list) } }, upsert: true } })) as never, { ordered: false });
      }
      return n;
    },
  };
}

export type RegistrationsStore = ReturnType<typeof createRegistrationsStore>;
