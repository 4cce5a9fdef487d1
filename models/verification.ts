import mongoose, { Schema } from 'mongoose';
import { UNIT_FINDINGS, VISIT_STATUSES } from '../server/domain/verification';

/**
 * Post-shipment verification visits: planned by investigators (for units, a site or a channel
 * partner, from a case or on their own) and then their outcome: which units were seen (serials
 * confirmed), whether the location and end use were as declared, findings and photos.
 * `UnitVisits` lists a unit's visits and when it was last seen by one, under the unit's id.
 */

const fileSchema = new Schema({ fileId: String, sha256: String, mediaType: String, size: Number, originalName: String }, { _id: false });

const visitSchema = new Schema(
  {
    _id: { type: String, required: true }, // `vis_…`
    status: { type: String, enum: VISIT_STATUSES, required: true },
    plannedFor: { type: Date, required: true },
    inspector: { type: String, required: true, trim: true, maxlength: 200 },
    site: { type: String, required: true, trim: true, maxlength: 500 },
    partner: { type: String, trim: true, maxlength: 200, default: '' },
    caseId: { type: String, default: null },
    unitIds: { type: [String], default: [] },
    checklist: { type: [String], default: [] },
    plannedByUserId: { type: String, required: true },
    createdAt: { type: Date, required: true },
    outcome: {
      type: new Schema(
        {
          recordedAt: Date,
          byUserId: String,
          units: [new Schema({ unitId: String, finding: { type: String, enum: UNIT_FINDINGS }, serialConfirmed: Boolean, note: String }, { _id: false })],
          locationConfirmed: Boolean,
          endUseConsistent: Boolean,
          findings: String,
          photos: [fileSchema],
        },
        { _id: false },
      ),
      default: null,
    },
  },
  { versionKey: false },
);
visitSchema.index({ status: 1, plannedFor: 1 });
export const Visit = mongoose.model('Visit', visitSchema);

const unitVisitsSchema = new Schema(
  {
    _id: { type: String, required: true }, // the unit id
    visitIds: { type: [String], default: [] },
    lastVerifiedAt: { type: Date, default: null },
  },
  { versionKey: false },
);
unitVisitsSchema.index({ lastVerifiedAt: 1 });
export const UnitVisits = mongoose.model('UnitVisits', unitVisitsSchema);
