import mongoose, { Schema } from 'mongoose';

/** Red-flag rules from the domain primer; ids are stable (stored on flags and cases). */
export const FLAG_RULES = [
  'restricted-country', // registration, transfer or check-in in a restricted country
  'country-mismatch', // check-in country ≠ registered country (possible diversion)
  'unregistered-check-in', // a catalogued serial checks in without a registration
  'unknown-serial', // a serial checks in that is not in the catalogue at all
  'unnotified-transfer', // relocation seen first in check-ins, without notice or approval
  'high-risk-end-user', // high-risk model with a high-risk end-user type
  'end-use-outside-intended', // declared end use outside the model's intended uses
  'misuse-report', // a misuse report naming the unit, its model or a registration's country
] as const;
export type FlagRule = (typeof FLAG_RULES)[number];

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
      kind: { type: String, enum: ['registration', 'transfer', 'check-in', 'report'], required: true },
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
