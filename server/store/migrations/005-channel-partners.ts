import crypto from 'node:crypto';
import { Unit } from '../../../models/catalogue';
import { Partner } from '../../../models/partners';
import { nameKey } from '../../domain/partners';
import { allocateFromVendor } from '../partners';
import type { Migration } from './index';

/** Units read and allocated per round. */
const BATCH = 1_000;

const hasFreeTextPartner = { 'firstSale.channelPartner': { $nin: ['', null] } };

/**
 * Units named their channel partner in free text (`firstSale.channelPartner`) before partners
 * were records. Each spelling maps to a partner by its folded name (case, accents, punctuation
 * and legal forms set aside), creating the partner when none has it; the units are allocated
 * to it. Spellings that differ beyond that are left for the admin's merge page
 * (/admin/partners/merge). Resumable: a unit already in the channel is not allocated again.
 */
export function channelPartnersMigration(): Migration {
  return {
    id: '005-channel-partners',
    description: 'free-text channel partners of units → partner records and allocations',
    unit: 'units',
    remaining: () => Unit.countDocuments(hasFreeTextPartner),
    async run(progress) {
      const now = new Date();
      const partnerIds = new Map<string, string>(); // folded name → partner id
      for (const p of await Partner.find({}, { nameKey: 1, aliases: 1 }).lean()) {
        partnerIds.set(p.nameKey, p._id);
        for (const alias of p.aliases) partnerIds.set(nameKey(alias), p._id);
      }

      async function partnerFor(spelling: string): Promise<string> {
        const key = nameKey(spelling);
        const known = partnerIds.get(key);
        if (known) {
          await Partner.updateOne({ _id: known, name: { $ne: spelling } }, { $addToSet: { aliases: spelling } });
          return known;
        }
        const _id = `ptn_${crypto.randomBytes(10).toString('hex')}`;
        await Partner.create({ _id, name: spelling, nameKey: key, aliases: [], type: 'distributor', createdAt: now, updatedAt: now });
        partnerIds.set(key, _id);
        return _id;
      }

      let done = 0;
      let batch: Array<{ _id: string; modelId: string; spelling: string }> = [];
      const flush = async () => {
        const perPartner = new Map<string, Array<{ _id: string; modelId: string }>>();
        for (const u of batch) {
          const id = await partnerFor(u.spelling);
          perPartner.set(id, [...(perPartner.get(id) ?? []), u]);
        }
        for (const [partnerId, units] of perPartner) await allocateFromVendor(partnerId, units, 'migration', now);
        done += batch.length;
        progress(done);
        batch = [];
      };
      const units = Unit.find(hasFreeTextPartner, { modelId: 1, 'firstSale.channelPartner': 1 }).lean<Array<{ _id: string; modelId: string; firstSale: { channelPartner: string } }>>();
      for await (const u of units.cursor({ batchSize: BATCH })) {
        batch.push({ _id: u._id, modelId: u.modelId, spelling: u.firstSale.channelPartner.trim() });
        if (batch.length >= BATCH) await flush();
      }
      await flush();
      return done;
    },
  };
}
