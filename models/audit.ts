import mongoose, { Schema } from 'mongoose';

/**
 * The append-only audit log. Entry `_id` is its sequence number (zero-padded), so two writers
 * can never both append entry N: the unique `_id` decides, and the loser re-reads and retries.
 * Each entry's hash covers its content and the previous entry's hash (tamper-evident chain).
 */
const auditEntrySchema = new Schema(
  {
    _id: { type: String, required: true }, // seq, zero-padded to 12 digits
    seq: { type: Number, required: true },
    at: { type: Date, required: true },
    actorId: { type: String, default: null }, // user id, api key id, or null for the system
    actorKind: { type: String, enum: ['user', 'api-key', 'system', 'reporter'], required: true },
    action: { type: String, required: true }, // e.g. case.status-changed, evidence.downloaded
    subjectKind: { type: String, required: true }, // case, report, unit, export, user, …
    subjectId: { type: String, required: true },
    detail: { type: Schema.Types.Mixed, default: {} },
    prevHash: { type: String, required: true },
    hash: { type: String, required: true },
  },
  { versionKey: false, minimize: false },
);
auditEntrySchema.index({ subjectKind: 1, subjectId: 1, seq: 1 });
// The admin's filters (who, what, when), newest first.
auditEntrySchema.index({ actorId: 1, seq: -1 });
auditEntrySchema.index({ action: 1, seq: -1 });
auditEntrySchema.index({ at: -1 });

export const AuditEntry = mongoose.model('AuditEntry', auditEntrySchema);

/** The chain's tip, read by `_id` on every append instead of scanning for the last entry. */
const auditHeadSchema = new Schema(
  { _id: { type: String, required: true }, seq: { type: Number, required: true }, hash: { type: String, required: true } },
  { versionKey: false },
);
export const AuditHead = mongoose.model('AuditHead', auditHeadSchema);
