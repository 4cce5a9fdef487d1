import mongoose, { Schema } from 'mongoose';
import { FLAG_RULES, FLAG_SOURCE_KINDS } from '../server/domain/flags';

export { FLAG_RULES, type FlagRule } from '../server/domain/flags';

const flagSchema = new Schema(
  {
    _id: { type: String, required: true },
    rule: { type: String, enum: FLAG_RULES, required: true },
    unitId: { type: String, default: null },
    modelId: { type: String, default: null },
    serial: { type: String, default: null },
    country: { type: String, default: null },
    /** What made the rule fire, in the rule's own words and numbers. */
    evidence: { type: Schema.Types.Mixed, required: true },
    source: {
      kind: { type: String, enum: FLAG_SOURCE_KINDS, required: true },
      id: { type: String, required: true },
    },
    caseId: { type: String, default: null },
    raisedAt: { type: Date, required: true },
  },
  { versionKey: false, minimize: false },
);
flagSchema.index({ caseId: 1 });
flagSchema.index({ rule: 1, raisedAt: 1 });

export const Flag = mongoose.model('Flag', flagSchema);
export type FlagDoc = InstanceType<typeof Flag>;

/** Run-time settings of the flags module, one document each (`_id` = setting name). */
const flagSettingSchema = new Schema(
  {
    _id: { type: String, required: true }, // 'restricted-countries'
    countries: { type: [String], default: [] },
    updatedAt: { type: Date, required: true },
    updatedByUserId: { type: Schema.Types.ObjectId, ref: 'User', default: null },
  },
  { versionKey: false },
);
export const FlagSetting = mongoose.model('FlagSetting', flagSettingSchema);
