import mongoose, { Schema } from 'mongoose';
import { FLAG_RULES } from './flags';

/**
 * Investigation cases. This is the minimal case the traceability and reporting modules open;
 * the cases module (triage, workflow, actions, remediation) builds on it.
 */

export const CASE_STATUSES = ['new', 'triaged', 'investigating', 'action', 'remediation', 'closed'] as const;
export type CaseStatus = (typeof CASE_STATUSES)[number];

const caseSourceSchema = new Schema(
  {
    kind: { type: String, enum: ['flag', 'report'], required: true },
    id: { type: String, required: true },
    rule: { type: String, enum: [...FLAG_RULES, null], default: null },
    at: { type: Date, required: true },
  },
  { _id: false },
);

const historySchema = new Schema(
  {
    at: { type: Date, required: true },
    byUserId: { type: Schema.Types.ObjectId, ref: 'User', default: null }, // null: the system
    action: { type: String, required: true },
    detail: { type: String, default: '' },
  },
  { _id: false },
);

const caseSchema = new Schema(
  {
    _id: { type: String, required: true }, // C-2026-000123
    title: { type: String, required: true, maxlength: 300 },
    status: { type: String, enum: CASE_STATUSES, default: 'new' },
    sources: { type: [caseSourceSchema], default: [] },
    sourceKinds: { type: [String], default: [] }, // for the queue's "source kind" filter
    rules: { type: [String], default: [] },
    unitIds: { type: [String], default: [] },
    modelIds: { type: [String], default: [] },
    countries: { type: [String], default: [] },
    harmCategories: { type: [String], default: [] },
    priority: { type: Number, default: null }, // set at triage
    assigneeIds: { type: [Schema.Types.ObjectId], ref: 'User', default: [] },
    deadlines: {
      acknowledgeBy: { type: Date, default: null },
      feedbackBy: { type: Date, default: null },
      reviewBy: { type: Date, default: null },
    },
    openedAt: { type: Date, required: true },
    updatedAt: { type: Date, required: true },
    closedAt: { type: Date, default: null },
    history: { type: [historySchema], default: [] },
  },
  { versionKey: false },
);
caseSchema.index({ status: 1, openedAt: -1 });

export const Case = mongoose.model('Case', caseSchema);
export type CaseDoc = InstanceType<typeof Case>;

/**
 * "One open case per unit and rule", enforced by a unique `_id` rather than read-then-write:
 * `_id` = `unit:<unitId>|<rule>` (or `serial:<serial>|<rule>` for uncatalogued serials,
 * `unit:<unitId>|report` for reports). Deleted when the case closes.
 */
const openCaseKeySchema = new Schema(
  {
    _id: { type: String, required: true },
    caseId: { type: String, required: true },
  },
  { versionKey: false },
);
export const OpenCaseKey = mongoose.model('OpenCaseKey', openCaseKeySchema);

/** Sequences by `_id` (e.g. `case-2026`), incremented atomically. */
const counterSchema = new Schema({ _id: { type: String, required: true }, seq: { type: Number, default: 0 } }, { versionKey: false });
export const Counter = mongoose.model('Counter', counterSchema);
