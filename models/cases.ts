import mongoose, { Schema } from 'mongoose';
import { FLAG_RULES } from './flags';

/**
 * Investigation cases: opened by red flags and reports, worked by investigators (triage,
 * workflow, notes, leverage actions, remediation) and kept, after retention, as aggregate
 * facts plus a trace of what was deleted. Cases are a small collection, but a scan of it still
 * costs seconds on FerretDB: the queue reads rows kept in memory (see CaseQueueStamp below).
 */

export const CASE_STATUSES = ['new', 'triaged', 'investigating', 'action', 'remediation', 'closed'] as const;
export type CaseStatus = (typeof CASE_STATUSES)[number];

/** Harm categories from the domain primer, shared with reports. */
export const HARM_CATEGORIES = [
  'privacy-surveillance',
  'expression-assembly-association',
  'life-liberty-security',
  'discrimination',
  'labour-rights',
  'environment-health',
  'consumer-safety',
  'other',
] as const;
export type HarmCategory = (typeof HARM_CATEGORIES)[number];

/** UNGP involvement: responsibility follows it. */
export const INVOLVEMENTS = ['cause', 'contribute', 'directly-linked'] as const;
export type Involvement = (typeof INVOLVEMENTS)[number];

export const CLOSURE_REASONS = ['substantiated', 'unsubstantiated', 'referred', 'duplicate', 'out-of-scope'] as const;
export type ClosureReason = (typeof CLOSURE_REASONS)[number];

export const PRIORITY_LEVELS = ['critical', 'high', 'medium', 'low'] as const;
export type PriorityLevel = (typeof PRIORITY_LEVELS)[number];

/** Leverage actions (Shift 2013; BSR 2021), as listed in the domain primer. */
export const LEVERAGE_ACTIONS = [
  'request-information',
  'require-clearance',
  'training-guidance',
  'audit-visit',
  'withhold-updates',
  'void-warranty',
  'notify-channel-partner',
  'escalate-compliance-board',
  'suspend-relationship',
  'support-remediation',
] as const;
export type LeverageActionKind = (typeof LEVERAGE_ACTIONS)[number];

/** `open` is the only status in which an action has effect on units (e.g. withholding). */
export const ACTION_STATUSES = ['open', 'done', 'lifted', 'cancelled'] as const;
export type ActionStatus = (typeof ACTION_STATUSES)[number];

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

const triageSchema = new Schema(
  {
    severity: {
      scale: { type: Number, min: 1, max: 4, required: true },
      scope: { type: Number, min: 1, max: 4, required: true },
      irremediable: { type: Number, min: 1, max: 4, required: true },
    },
    likelihood: { type: Number, min: 1, max: 4, required: true },
    involvement: { type: String, enum: INVOLVEMENTS, required: true },
    involvementRationale: { type: String, required: true, maxlength: 4000 },
    at: { type: Date, required: true },
    byUserId: { type: Schema.Types.ObjectId, ref: 'User', required: true },
  },
  { _id: false },
);

const noteSchema = new Schema(
  {
    _id: { type: String, required: true }, // note_…
    at: { type: Date, required: true },
    byUserId: { type: Schema.Types.ObjectId, ref: 'User', required: true },
    text: { type: String, required: true, maxlength: 10_000 },
  },
  { versionKey: false },
);

const actionSchema = new Schema(
  {
    _id: { type: String, required: true }, // act_…
    kind: { type: String, enum: LEVERAGE_ACTIONS, required: true },
    target: {
      customer: { type: String, default: '', maxlength: 200 },
      channelPartner: { type: String, default: '', maxlength: 200 },
      unitIds: { type: [String], default: [] },
    },
    status: { type: String, enum: ACTION_STATUSES, default: 'open' },
    dueBy: { type: Date, default: null },
    description: { type: String, default: '', maxlength: 4000 },
    outcome: { type: String, default: '', maxlength: 4000 },
    createdAt: { type: Date, required: true },
    createdByUserId: { type: Schema.Types.ObjectId, ref: 'User', required: true },
    updatedAt: { type: Date, required: true },
  },
  { versionKey: false },
);

const remediationSchema = new Schema(
  {
    _id: { type: String, required: true }, // rem_…
    at: { type: Date, required: true },
    byUserId: { type: Schema.Types.ObjectId, ref: 'User', required: true },
    provided: { type: String, required: true, maxlength: 4000 }, // what was provided or enabled
    toWhom: { type: String, required: true, maxlength: 500 },
    reporterFeedback: { type: String, default: '', maxlength: 4000 },
  },
  { versionKey: false },
);

const conflictSchema = new Schema(
  {
    userId: { type: Schema.Types.ObjectId, ref: 'User', required: true },
    reason: { type: String, required: true, maxlength: 1000 },
    at: { type: Date, required: true },
    byUserId: { type: Schema.Types.ObjectId, ref: 'User', default: null },
  },
  { _id: false },
);

const caseSchema = new Schema(
  {
    _id: { type: String, required: true }, // C-2026-000123
    title: { type: String, required: true, maxlength: 300 },
    status: { type: String, enum: CASE_STATUSES, default: 'new' },
    closureReason: { type: String, enum: [...CLOSURE_REASONS, null], default: null },
    sources: { type: [caseSourceSchema], default: [] },
    sourceKinds: { type: [String], default: [] }, // for the queue's "source kind" filter
    rules: { type: [String], default: [] },
    unitIds: { type: [String], default: [] },
    modelIds: { type: [String], default: [] },
    countries: { type: [String], default: [] },
    harmCategories: { type: [String], default: [] },
    triage: { type: triageSchema, default: null },
    /** Sort key: severity first, likelihood second (see priorityOf). */
    priority: { type: Number, default: null },
    priorityLevel: { type: String, enum: [...PRIORITY_LEVELS, null], default: null },
    assigneeIds: { type: [Schema.Types.ObjectId], ref: 'User', default: [] },
    /** Investigators who may neither be assigned nor see the case. */
    conflictedUserIds: { type: [Schema.Types.ObjectId], ref: 'User', default: [] },
    conflicts: { type: [conflictSchema], default: [] },
    deadlines: {
      acknowledgeBy: { type: Date, default: null },
      acknowledgedAt: { type: Date, default: null },
      feedbackBy: { type: Date, default: null },
      feedbackGivenAt: { type: Date, default: null },
      reviewBy: { type: Date, default: null },
    },
    notes: { type: [noteSchema], default: [] },
    actions: { type: [actionSchema], default: [] },
    remediation: { type: [remediationSchema], default: [] },
    mergedIntoCaseId: { type: String, default: null },
    legalHold: {
      on: { type: Boolean, default: false },
      reason: { type: String, default: '', maxlength: 1000 },
      at: { type: Date, default: null },
      byUserId: { type: Schema.Types.ObjectId, ref: 'User', default: null },
    },
    /** After retention: what was deleted and when; the sources stay as the trace. */
    retention: {
      reporterDataDeletedAt: { type: Date, default: null },
      deletedReportIds: { type: [String], default: [] },
    },
    /** Bumped by every investigator change: guards read-modify-write of the arrays above. */
    rev: { type: Number, default: 0 },
    openedAt: { type: Date, required: true },
    updatedAt: { type: Date, required: true },
    closedAt: { type: Date, default: null },
    history: { type: [historySchema], default: [] },
  },
  { versionKey: false },
);
caseSchema.index({ status: 1, openedAt: -1 });
caseSchema.index({ assigneeIds: 1, status: 1 });
caseSchema.index({ status: 1, closedAt: 1 }); // retention

export const Case = mongoose.model('Case', caseSchema);
export type CaseDoc = InstanceType<typeof Case>;

/**
 * "One open case per unit and rule", enforced by a unique `_id` rather than read-then-write:
 * `_id` = `unit:<unitId>|<rule>` (or `serial:<serial>|<rule>` for uncatalogued serials,
 * `unit:<unitId>|report` for reports). Deleted when the case closes or is merged.
 */
const openCaseKeySchema = new Schema(
  {
    _id: { type: String, required: true },
    caseId: { type: String, required: true },
  },
  { versionKey: false },
);
openCaseKeySchema.index({ caseId: 1 });
export const OpenCaseKey = mongoose.model('OpenCaseKey', openCaseKeySchema);

/**
 * The case queue's version stamp (one document, `_id: 'cases'`), read by `_id` on every queue
 * request. Each process keeps the queue rows in memory; every case write through the cases
 * service increments `seq` and appends the case id to `recent` (the last RECENT_CASE_CHANGES),
 * so another process re-reads just those cases by `_id`, or rebuilds from a scan when it fell
 * further behind, when the stamp is missing (cases inserted straight into the collection, e.g.
 * by the bench generator, which drops the database first) or when its `epoch` changed.
 */
export const RECENT_CASE_CHANGES = 128;
const caseQueueStampSchema = new Schema(
  {
    _id: { type: String, required: true },
    epoch: { type: String, required: true },
    seq: { type: Number, default: 0 },
    recent: { type: [String], default: [] },
  },
  { versionKey: false },
);
export const CaseQueueStamp = mongoose.model('CaseQueueStamp', caseQueueStampSchema);

/** Sequences by `_id` (e.g. `case-2026`), incremented atomically. */
const counterSchema = new Schema({ _id: { type: String, required: true }, seq: { type: Number, default: 0 } }, { versionKey: false });
export const Counter = mongoose.model('Counter', counterSchema);
