import mongoose, { Schema } from 'mongoose';
import { HIT_STATUSES, SCREENED_SUBJECT_KINDS } from '../server/domain/screening';

/**
 * Restricted-party screening: the lists (a small collection of metadata), their entities and
 * blocking keys (large: read by `_id` only), the hits waiting for or given a review, the
 * false positives remembered, and the re-screening run's progress.
 *
 * A list's entities and keys carry the import they came from in their `_id`; the list points
 * at its active import, so replacing a list is one single-document update of that pointer.
 */

const listSchema = new Schema(
  {
    _id: { type: String, required: true }, // a slug of the list's source, e.g. `opensanctions-default`
    name: { type: String, required: true, maxlength: 200 },
    source: { type: String, required: true, maxlength: 500 },
    format: { type: String, enum: ['ftm', 'csl'], required: true },
    versionDate: { type: Date, required: true },
    activeImportId: { type: String, required: true },
    entityCount: { type: Number, required: true },
    importedAt: { type: Date, required: true },
    importedByUserId: { type: String, default: null },
  },
  { versionKey: false },
);
export const ScreeningList = mongoose.model('ScreeningList', listSchema);

const entitySchema = new Schema(
  {
    _id: { type: String, required: true }, // `<importId>:<entityId>`
    importId: { type: String, required: true },
    listId: { type: String, required: true },
    entityId: { type: String, required: true },
    entityType: { type: String, required: true },
    names: { type: [String], default: [] },
    countries: { type: [String], default: [] },
    birthDates: { type: [String], default: [] },
    identifiers: { type: [String], default: [] },
    programs: { type: [String], default: [] },
  },
  { versionKey: false },
);
// Streaming a whole import (re-screening) and removing a replaced one; MongoDB only.
entitySchema.index({ importId: 1 });
export const ScreeningEntity = mongoose.model('ScreeningEntity', entitySchema);

/**
 * Blocking keys: `_id` `<importId>|<key>` → the entities whose names have that key, with how
 * many keys each has (a candidate must share enough of them, matching.ts `keysNeeded`).
 * Screening one name reads its few keys by `_id` and scores only those entities.
 */
const keySchema = new Schema(
  {
    _id: { type: String, required: true },
    importId: { type: String, required: true },
    entries: { type: [new Schema({ e: { type: String, required: true }, n: { type: Number, required: true } }, { _id: false })], default: [] },
  },
  { versionKey: false },
);
keySchema.index({ importId: 1 });
export const ScreeningKey = mongoose.model('ScreeningKey', keySchema);

const hitSchema = new Schema(
  {
    _id: { type: String, required: true }, // derived from subject, party, entity and their fingerprints
    status: { type: String, enum: HIT_STATUSES, required: true },
    subject: {
      kind: { type: String, enum: SCREENED_SUBJECT_KINDS, required: true },
      id: { type: String, required: true },
      unitId: { type: String, default: null },
      /** Which party of the record: owner, contact, new owner. */
      role: { type: String, required: true },
    },
    party: { name: { type: String, required: true }, country: { type: String, default: null } },
    partyFingerprint: { type: String, required: true },
    entity: {
      listId: { type: String, required: true },
      listName: { type: String, required: true },
      entityId: { type: String, required: true },
      entityType: { type: String, required: true },
      names: { type: [String], default: [] },
      countries: { type: [String], default: [] },
      birthDates: { type: [String], default: [] },
      identifiers: { type: [String], default: [] },
      programs: { type: [String], default: [] },
    },
    entityFingerprint: { type: String, required: true },
    score: { type: Number, required: true },
    explanation: { type: Schema.Types.Mixed, required: true },
    /** Raised while the record waited (held) or by re-screening a record already in effect. */
    held: { type: Boolean, required: true },
    raisedAt: { type: Date, required: true },
    decision: {
      type: new Schema({ byUserId: String, at: Date, reason: String }, { _id: false }),
      default: null,
    },
    caseId: { type: String, default: null },
  },
  { versionKey: false },
);
hitSchema.index({ status: 1, raisedAt: 1 });
hitSchema.index({ 'subject.kind': 1, 'subject.id': 1 });
export const ScreeningHit = mongoose.model('ScreeningHit', hitSchema);

/** A false positive remembered: `_id` `<partyFingerprint>|<listId>:<entityId>|<entityFingerprint>`. */
const clearanceSchema = new Schema(
  {
    _id: { type: String, required: true },
    hitId: { type: String, required: true },
    reason: { type: String, required: true },
    byUserId: { type: String, required: true },
    at: { type: Date, required: true },
  },
  { versionKey: false },
);
export const ScreeningClearance = mongoose.model('ScreeningClearance', clearanceSchema);

/** Re-screening after an import: one document (`_id` 'rescreen'), claimed by a guarded update. */
const runSchema = new Schema(
  {
    _id: { type: String, required: true },
    status: { type: String, enum: ['requested', 'running', 'done'], required: true },
    requestedAt: { type: Date, required: true },
    startedAt: { type: Date, default: null },
    finishedAt: { type: Date, default: null },
    screened: { type: Number, default: 0 },
    raised: { type: Number, default: 0 },
  },
  { versionKey: false },
);
export const ScreeningRun = mongoose.model('ScreeningRun', runSchema);
