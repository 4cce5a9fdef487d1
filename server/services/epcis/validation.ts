import fs from 'node:fs';
import path from 'node:path';
import Ajv, { type ErrorObject } from 'ajv';
import addFormats from 'ajv-formats';
import { MAX_CAPTURE_EVENTS } from '../../domain/epcis';
import { projectRoot } from '../../paths';

/**
 * Validation against GS1's EPCIS 2.0 JSON Schema (schema/README.md names its source). The
 * schema is compiled once per process: it is code, not state.
 */

const SCHEMA_FILE = path.join(projectRoot, 'server/services/epcis/schema/epcis-2.0-schema.json');
const ajv = new Ajv({ allErrors: true, strict: false });
addFormats(ajv);
const validate = ajv.compile(JSON.parse(fs.readFileSync(SCHEMA_FILE, 'utf8')) as object);

/** The event types Downstream captures (the scope); others are refused per event. */
export const CAPTURED_EVENT_TYPES = ['ObjectEvent', 'TransactionEvent'] as const;

export interface EventError {
  index: number;
  eventID: string | null;
  field: string;
  message: string;
}

export interface DocumentCheck {
  /** Problems of the document itself (field → message): the capture is refused. */
  documentErrors: Record<string, string>;
  /** Problems of single events, by their position in `eventList`. */
  eventErrors: EventError[];
  events: Array<Record<string, unknown>>;
}

const EVENT_PATH = /^\/epcisBody\/eventList\/(\d+)(?:\/(.*))?$/;
/** Per event, enough messages to fix it; the schema's `if`/`anyOf` wrappers say nothing a person can act on. */
const MESSAGES_PER_EVENT = 5;
const NOISE = new Set(['if', 'anyOf', 'allOf', 'oneOf']);

const describe = (e: ErrorObject) => {
  const allowed = (e.params as { allowedValues?: unknown[] }).allowedValues;
  if (e.keyword === 'propertyNames') return `${e.message}: "${(e.params as { propertyName?: string }).propertyName}"`;
  return allowed && allowed.length <= 8 ? `${e.message}: ${allowed.join(', ')}` : (e.message ?? 'is not valid');
};

/** Checks a capture document: the schema, the captured event types and the size limit. */
export function checkDocument(doc: unknown): DocumentCheck {
  const documentErrors: Record<string, string> = {};
  const body = (doc as { epcisBody?: { eventList?: unknown } } | null)?.epcisBody;
  const list = Array.isArray(body?.eventList) ? (body.eventList as Array<Record<string, unknown>>) : [];
  if (typeof doc !== 'object' || doc === null || (doc as { type?: unknown }).type !== 'EPCISDocument') {
    return { documentErrors: { type: 'Send an EPCIS 2.0 document: "type": "EPCISDocument".' }, eventErrors: [], events: [] };
  }
  if (!Array.isArray(body?.eventList)) return { documentErrors: { 'epcisBody.eventList': 'The document has no list of events (epcisBody.eventList).' }, eventErrors: [], events: [] };
  if (list.length > MAX_CAPTURE_EVENTS) {
    return { documentErrors: { 'epcisBody.eventList': `At most ${MAX_CAPTURE_EVENTS.toLocaleString('en')} events per capture; split the document.` }, eventErrors: [], events: [] };
  }
  const perEvent = new Map<number, ErrorObject[]>();
  if (!validate(doc)) {
    for (const e of validate.errors ?? []) {
      const m = EVENT_PATH.exec(e.instancePath);
      if (m) perEvent.set(Number(m[1]), [...(perEvent.get(Number(m[1])) ?? []), e]);
      else if (!NOISE.has(e.keyword)) documentErrors[e.instancePath.slice(1).replace(/\//g, '.') || 'document'] ??= describe(e);
    }
  }
  const eventErrors: EventError[] = [];
  list.forEach((event, index) => {
    const eventID = typeof event?.eventID === 'string' ? event.eventID : null;
    if (!CAPTURED_EVENT_TYPES.includes(event?.type as never)) {
      eventErrors.push({ index, eventID, field: 'type', message: `Only ${CAPTURED_EVENT_TYPES.join(' and ')} are captured.` });
      return;
    }
    const errors = (perEvent.get(index) ?? []).filter((e) => !NOISE.has(e.keyword));
    // The deepest paths name the field to fix; the event-level ones repeat them.
    const seen = new Set<string>();
    for (const e of errors.sort((a, b) => b.instancePath.length - a.instancePath.length)) {
      const field = (EVENT_PATH.exec(e.instancePath)?.[2] ?? '').replace(/\//g, '.') || 'event';
      const message = describe(e);
      if (seen.has(`${field}:${message}`) || seen.size >= MESSAGES_PER_EVENT) continue;
      seen.add(`${field}:${message}`);
      eventErrors.push({ index, eventID, field, message });
    }
  });
  return { documentErrors, eventErrors, events: list };
}

/** Whether a document (e.g. a query answer) is valid EPCIS 2.0; for tests and the query's own checks. */
export function schemaErrors(doc: unknown): ErrorObject[] {
  return validate(doc) ? [] : [...(validate.errors ?? [])];
}
