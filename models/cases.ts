import mongoose, { Schema } from 'mongoose';
import { ACTION_STATUSES, CASE_STATUSES, CLOSURE_REASONS, INVOLVEMENTS, LEVERAGE_ACTIONS, PRIORITY_LEVELS, IDENTITY_REQUEST_STATUSES } from '../server/domain/cases';
import { FLAG_RULES } from '../server/domain/flags';

/**
 * Investigation cases: opened by red flags and reports, worked by investigators (triage,
 * workflow, notes, leverage actions, remediation) and kept, after retention, as aggregate
 * facts plus a trace of what was deleted. Cases are a small collection: the queue is a query
 * over it (server/store/cases.ts), served by the indexes below on MongoDB.
 */

export {
  ACTION_STATUSES,
  CASE_STATUSES,
  CLOSURE_REASONS,
  HARM_CATEGORIES,
  INVOLVEMENTS,
  LEVERAGE_ACTIONS,
  PRIORITY_LEVELS,
  type ActionStatus,
  type CaseStatus,
  type ClosureReason,
  type HarmCategory,
  type Involvement,
  type LeverageActionKind,
  type PriorityLevel,
} from '../server/domain/cases';

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

const pendingEventSchema = new Schema(
  {
    _id: { type: String, required: true }, // evt_… derived from the change (idempotent)
    type: { type: String, required: true },
    data: { type: Schema.Types.Mixed, required: true },
    occurredAt: { type: Date, required: true },
  },
  { minimize: false },
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
    /**
     * Webhook events of this case's changes, pushed in the same update as the change (the
     * outbox of "Connecting other systems"); the webhook job moves them to its own outbox and
     * pulls them. Absent or empty when nothing waits.
     */
    pendingEvents: { type: [pendingEventSchema], default: undefined },
  },
  { versionKey: false },
);
caseSchema.index({ status: 1, openedAt: -1 }); // the queue's default order
caseSchema.index({ status: 1, priority: -1, openedAt: 1 }); // the queue by priority
caseSchema.index({ status: 1, updatedAt: -1 }); // the queue by last change
caseSchema.index({ assigneeIds: 1, status: 1 }); // "my cases"
caseSchema.index({ unitIds: 1, openedAt: 1 }); // a unit's timeline
caseSchema.index({ status: 1, closedAt: 1 }); // retention
caseSchema.index({ 'pendingEvents._id': 1 }, { sparse: true }); // webhook events waiting to be moved

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
    /** When the opener claimed it: its case is written just after, so a key without its case is stale only once old. */
    claimedAt: { type: Date, default: null },
  },
  { versionKey: false },
);
openCaseKeySchema.index({ caseId: 1 });
export const OpenCaseKey = mongoose.model('OpenCaseKey', openCaseKeySchema);

/**
 * A unit's cases, for its timeline on engines where only `_id` reaches an index (the embedded engine):
 * `_id` = the unit id, `caseIds` every case that ever named it. Kept by the cases store when a
 * case gains a unit; on MongoDB the `unitIds` index serves the timeline instead.
 */
const unitCasesSchema = new Schema(
  {
    _id: { type: String, required: true },
    caseIds: { type: [String], default: [] },
  },
  { versionKey: false },
);
export const UnitCases = mongoose.model('UnitCases', unitCasesSchema);

/** Sequences by `_id` (e.g. `case-2026`), incremented atomically. */
const counterSchema = new Schema({ _id: { type: String, required: true }, seq: { type: Number, default: 0 } }, { versionKey: false });
export const Counter = mongoose.model('Counter', counterSchema);

/**
 * The cases' change log: one document (`_id` 'cases') whose `seq` every case write increments
 * and whose `recent` holds the ids of the last changed cases, in the same atomic update. A
 * process holding the queue's rows checks it by `_id` to know which rows to read again.
 */
const caseChangesSchema = new Schema(
  { _id: { type: String, required: true }, seq: { type: Number, required: true }, recent: { type: [String], default: [] } },
  { versionKey: false, collection: 'casechanges' },
);
export const CaseChanges = mongoose.model('CaseChanges', caseChangesSchema);

/**
 * An investigator's request to see the reporters' identity on a case: a reason, then an
 * approval by someone else (an admin or a custodian). An approved request is the grant, live
 * until `expiresAt`. A small collection (a handful per case), read by scanning.
 */
const identityRequestSchema = new Schema(
  {
    _id: { type: String, required: true },
    caseId: { type: String, required: true },
    requesterId: { type: Schema.Types.ObjectId, ref: 'User', required: true },
    reason: { type: String, required: true, trim: true, maxlength: 2000 },
    status: { type: String, enum: IDENTITY_REQUEST_STATUSES, required: true, default: 'pending' },
    requestedAt: { type: Date, required: true },
    decidedByUserId: { type: Schema.Types.ObjectId, ref: 'User', default: null },
    decidedAt: { type: Date, default: null },
    decisionReason: { type: String, trim: true, maxlength: 2000, default: '' },
    expiresAt: { type: Date, default: null },
  },
  { versionKey: false },
);
identityRequestSchema.index({ status: 1, requestedAt: 1 }); // the approvers' queue
identityRequestSchema.index({ caseId: 1, requesterId: 1, requestedAt: -1 }); // a case's requests, a live grant
export const IdentityRequest = mongoose.model('IdentityRequest', identityRequestSchema);
