import mongoose, { Schema } from 'mongoose';
import { CONFIDENCES, HARM_CATEGORIES, LINK_KINDS, LINKING_STATES, MESSAGE_KINDS, ONGOING, REPORT_PARTIES, REPORT_STATUSES, REPORTER_KINDS } from '../server/domain/reports';

/**
 * Misuse reports from the public channel.
 *
 * `_id` is derived from the receipt by a slow keyed KDF (server/services/reports/receipts.ts
 * `createReceiptHasher`): follow-up is one `_id` lookup, and what is stored cannot be turned back into
 * the receipt without the server secret and ~10^16 slow hashes.
 *
 * Messages and evidence are embedded rather than kept in their own collections: a follow-up
 * page is then one `_id` read (the embedded engine scans on any other filter), every change is one
 * atomic `$push`/`$set` on one document without transactions, and retention wipes a
 * reporter's data in one update. Both arrays are capped (MAX_MESSAGES, MAX_EVIDENCE in
 * server/domain/reports.ts), which keeps the document far below the 16 MB limit.
 *
 * Nothing here identifies the sender's connection: no IP address, user agent or fingerprint.
 */

export {
  CONFIDENCES,
  HARM_CATEGORIES,
  LINK_KINDS,
  LINKING_STATES,
  MAX_EVIDENCE,
  MAX_MESSAGES,
  ONGOING,
  REPORT_PARTIES,
  REPORT_STATUSES,
  REPORTER_KINDS,
  type Confidence,
  type HarmCategory,
  type LinkKind,
  type LinkingState,
  type Ongoing,
  type ReportParty,
  type ReportStatus,
  type ReporterKind,
} from '../server/domain/reports';

const evidenceSchema = new Schema(
  {
    fileId: { type: String, required: true },
    sha256: { type: String, required: true },
    mediaType: { type: String, required: true },
    size: { type: Number, required: true },
    /** `evidence-<n>.<ext>`: what the portal shows and downloads (older reports lack it: the same name is derived). */
    name: { type: String, default: '' },
    /** The uploader's own file name: kept only when the reporter opted in; never sent in downloads. */
    originalName: { type: String, default: null },
    addedAt: { type: Date, required: true },
    addedBy: { type: String, enum: REPORT_PARTIES, required: true },
    addedByUserId: { type: String, default: null },
    /**
     * The file's own key sealed by the report's data key (the file on disk is sealed by it,
     * server/crypto/envelope.ts); null for a file stored in the clear before encryption at rest.
     */
    key: { type: String, default: null },
  },
  { _id: false },
);

const linkSchema = new Schema(
  {
    kind: { type: String, enum: LINK_KINDS, required: true },
    targetId: { type: String, required: true },
    confidence: { type: String, enum: CONFIDENCES, required: true },
    /** Why the linker proposed it, in words an investigator can check. */
    reason: { type: String, default: '' },
    /** null: not yet reviewed; true/false: an investigator confirmed or rejected it. */
    confirmed: { type: Boolean, default: null },
    confirmedBy: { type: String, default: null },
    confirmedAt: { type: Date, default: null },
  },
  { _id: false },
);

const messageSchema = new Schema(
  {
    _id: { type: String, required: true }, // random, so a message can be referred to
    from: { type: String, enum: REPORT_PARTIES, required: true },
    /** 'feedback': an investigator's answer on what was done, which the reporter is owed (shown as such). */
    kind: { type: String, enum: MESSAGE_KINDS, default: 'message' },
    userId: { type: String, default: null }, // the investigator; never anything about the reporter
    text: { type: String, required: true }, // sealed (the 5,000-character limit is the service's: ciphertext is longer)
    at: { type: Date, required: true },
  },
  { versionKey: false },
);

const reportSchema = new Schema(
  {
    _id: { type: String, required: true }, // rpt_ + keyed slow hash of the receipt
    reporterKind: { type: String, enum: REPORTER_KINDS, required: true },
    anonymous: { type: Boolean, required: true },
    /** Shown only to investigators assigned to the case; null when anonymous or erased. */
    contact: {
      type: new Schema(
        {
          name: { type: String, default: '' },
          organisation: { type: String, default: '' },
          email: { type: String, default: '' },
          /** Opted in to "there is news, use your receipt" e-mails (a flag: not sealed). */
          newsByEmail: { type: Boolean, default: false },
        },
        { _id: false },
      ),
      default: null,
    },
    product: {
      serials: { type: [String], default: [] },
      modelText: { type: String, default: '' },
      deviceDescription: { type: String, default: '' },
    },
    where: {
      country: { type: String, required: true, match: /^[A-Z]{2}$/ },
      place: { type: String, default: '' },
    },
    when: {
      from: { type: Date, default: null },
      until: { type: Date, default: null },
    },
    what: {
      harmCategories: { type: [String], enum: HARM_CATEGORIES, default: [] },
      description: { type: String, required: true }, // sealed (the 10,000-character limit is the service's)
      affected: { type: String, default: '' },
      ongoing: { type: String, enum: ONGOING, default: 'unknown' },
    },
    evidence: { type: [evidenceSchema], default: [] },
    links: { type: [linkSchema], default: [] },
    /**
     * 'pending' while the linker's second step (registrations of the linked models in the
     * report's country) has not run yet; the report-links job runs it and then sets 'done'.
     * Reports saved before this field existed read as done.
     */
    linking: { type: String, enum: LINKING_STATES, default: 'done' },
    caseId: { type: String, default: null },
    status: { type: String, enum: REPORT_STATUSES, default: 'received' },
    /** When the case was closed for the reporter, and the outcome they were given. */
    closedAt: { type: Date, default: null },
    outcome: { type: String, default: null },
    /** What investigators chose to share with the reporter. */
    feedback: {
      text: { type: String, default: '' },
      at: { type: Date, default: null },
      byUserId: { type: String, default: null },
    },
    messages: { type: [messageSchema], default: [] },
    /** Kept beside the array so the cap is one atomic filter (`$lt`) on the `$push`. */
    messageCount: { type: Number, default: 0 },
    /** Set when retention removed the reporter's data; the report keeps only this trace. */
    erased: {
      type: new Schema(
        { at: Date, evidenceFiles: Number, messages: Number, evidenceSha256: [String] },
        { _id: false },
      ),
      default: null,
    },
    /**
     * True when the reporter's texts (contact, device description, place, description, affected,
     * messages, feedback, outcome) are sealed by the report's data key (ReportKey); false for a
     * report written in the clear before encryption at rest, until `npm run migrate` seals it.
     */
    sealed: { type: Boolean, default: false },
    receivedAt: { type: Date, required: true },
    updatedAt: { type: Date, required: true },
  },
  { versionKey: false, minimize: false },
);
// For MongoDB deployments; the embedded engine scans regardless (server/store/reports.ts says where).
reportSchema.index({ caseId: 1 }); // a merge re-points a case's reports
reportSchema.index({ status: 1, receivedAt: -1 }); // staff lists
reportSchema.index({ 'evidence.fileId': 1 }); // the unclaimed-evidence clean-up: is a file held by a report?
reportSchema.index({ sealed: 1 }); // the encryption migration's reports still in the clear

export const Report = mongoose.model('Report', reportSchema);

/**
 * A report waiting for the linker's second step (`_id` = the report's): the report-links job
 * reads this small collection rather than filtering the reports, which grow without end and
 * which the embedded engine can only scan. Removed once the report's `linking` is done.
 */
const reportLinkWaitSchema = new Schema({ _id: { type: String, required: true }, queuedAt: { type: Date, required: true } }, { versionKey: false });
export const ReportLinkWait = mongoose.model('ReportLinkWait', reportLinkWaitSchema, 'reportlinkwaits');
export type ReportDoc = InstanceType<typeof Report>;
export type ReportRecord = mongoose.InferSchemaType<typeof reportSchema> & { _id: string };

/**
 * An evidence file stored by a report form's first step and not yet part of a report (`_id`:
 * the file id). A reporter who never sends the form must not leave their photos behind: the
 * hourly retention run removes these files once the form can no longer be sent.
 */
const unclaimedEvidenceSchema = new Schema({ _id: { type: String, required: true }, storedAt: { type: Date, required: true } }, { versionKey: false });
export const UnclaimedEvidence = mongoose.model('UnclaimedEvidence', unclaimedEvidenceSchema);

/**
 * A report's data key (`_id`: the report's), wrapped by the master key `keyId`
 * (server/crypto/envelope.ts). Kept apart from the report so that retention can destroy it
 * (crypto-shredding: every leftover copy of the report's texts and files becomes unreadable),
 * and so that a rotation re-wraps these small documents without touching the reports.
 */
const reportKeySchema = new Schema(
  {
    _id: { type: String, required: true },
    keyId: { type: String, required: true },
    wrapped: { type: String, required: true },
    createdAt: { type: Date, required: true },
  },
  { versionKey: false },
);
reportKeySchema.index({ keyId: 1 }); // a rotation's keys still under the old master key
export const ReportKey = mongoose.model('ReportKey', reportKeySchema);
