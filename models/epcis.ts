import mongoose, { Schema } from 'mongoose';
import { CAPTURE_STATUSES } from '../server/domain/epcis';

/**
 * EPCIS 2.0 capture and the events it stores.
 *
 * Access paths (the embedded engine pushes down only `_id` equality):
 *  - a capture job by `_id` (`cap_…`), its events in chunks `<captureId>:<n>` read by `_id`;
 *  - a captured event by `_id` = its `eventID` (so capturing it again adds nothing);
 *  - a unit's captured events through `UnitEpcisEvents` (`_id` = the unit id), kept on write.
 * The secondary indexes below serve the event query on MongoDB; on the embedded engine a query
 * without an EPC scans the captured events (README, "Connecting other systems").
 */

const eventErrorSchema = new Schema({ index: Number, eventID: String, field: String, message: String }, { _id: false });

const captureSchema = new Schema(
  {
    _id: { type: String, required: true }, // cap_…
    apiKeyId: { type: String, required: true },
    status: { type: String, enum: CAPTURE_STATUSES, required: true },
    /** rollback: one invalid event refuses the whole capture (the standard's default); proceed: the valid ones are stored. */
    errorBehaviour: { type: String, enum: ['rollback', 'proceed'], required: true },
    chunks: { type: Number, default: 0 },
    chunksDone: { type: Number, default: 0 },
    counts: {
      events: { type: Number, default: 0 },
      processed: { type: Number, default: 0 },
      stored: { type: Number, default: 0 },
      duplicates: { type: Number, default: 0 },
      rejected: { type: Number, default: 0 },
      matchedUnits: { type: Number, default: 0 },
    },
    eventErrors: { type: [eventErrorSchema], default: [] },
    createdAt: { type: Date, required: true },
    finishedAt: { type: Date, default: null },
  },
  { versionKey: false },
);
captureSchema.index({ status: 1, createdAt: 1 });

export const EpcisCapture = mongoose.model('EpcisCapture', captureSchema, 'epcisCaptures');

/** A capture's valid events waiting for the background job, a few hundred per document. */
const captureChunkSchema = new Schema(
  {
    _id: { type: String, required: true }, // <captureId>:<n>
    captureId: { type: String, required: true },
    /** Each as the caller sent it, with its position in the document. */
    events: { type: [new Schema({ index: Number, event: Schema.Types.Mixed }, { _id: false })], default: [] },
  },
  { versionKey: false },
);

export const EpcisCaptureChunk = mongoose.model('EpcisCaptureChunk', captureChunkSchema, 'epcisCaptureChunks');

const partySchema = new Schema({ type: String, id: String }, { _id: false });

const epcisEventSchema = new Schema(
  {
    _id: { type: String, required: true }, // the event's eventID
    captureId: { type: String, required: true },
    type: { type: String, required: true },
    eventTime: { type: Date, required: true },
    recordTime: { type: Date, required: true },
    action: { type: String, default: null },
    /** CBV short form (`shipping`) when the event used a CBV step; else as sent. */
    bizStep: { type: String, default: null },
    disposition: { type: String, default: null },
    epcs: { type: [String], default: [] },
    /** The units the EPCs resolved to through the catalogue's GTIN. */
    unitIds: { type: [String], default: [] },
    bizLocation: { type: String, default: null },
    readPoint: { type: String, default: null },
    sources: { type: [partySchema], default: [] },
    destinations: { type: [partySchema], default: [] },
    /** The country the event places its units in, where its locations resolve to one. */
    country: { type: String, default: null },
    /** The event as captured (with its eventID), returned by the query. */
    event: { type: Schema.Types.Mixed, required: true },
  },
  { versionKey: false, minimize: false },
);
epcisEventSchema.index({ eventTime: 1, _id: 1 });
epcisEventSchema.index({ epcs: 1 });
epcisEventSchema.index({ bizStep: 1, eventTime: 1 });
epcisEventSchema.index({ bizLocation: 1, eventTime: 1 });

export const EpcisEvent = mongoose.model('EpcisEvent', epcisEventSchema, 'epcisEvents');

/** A unit's captured events, newest last, for its timeline and the per-item query. */
const unitEpcisEventsSchema = new Schema(
  {
    _id: { type: String, required: true }, // unit id
    /** How many events the list holds: the guard of every write to it. */
    count: { type: Number, default: 0 },
    events: {
      type: [
        new Schema(
          {
            eventId: { type: String, required: true },
            at: { type: Date, required: true },
            type: String,
            bizStep: String,
            disposition: String,
            country: String,
          },
          { _id: false },
        ),
      ],
      default: [],
    },
  },
  { versionKey: false },
);

export const UnitEpcisEvents = mongoose.model('UnitEpcisEvents', unitEpcisEventsSchema, 'unitEpcisEvents');

/** Master data: an EPCIS location (SGLN or any URI) and the country it is in. */
const epcisLocationSchema = new Schema(
  {
    _id: { type: String, required: true }, // the location id as events name it
    country: { type: String, required: true },
    name: { type: String, default: '' },
    updatedAt: { type: Date, required: true },
  },
  { versionKey: false },
);

export const EpcisLocation = mongoose.model('EpcisLocation', epcisLocationSchema, 'epcisLocations');
