/** The EPCIS module's vocabulary (schema, rules and routes share it). */

export const CAPTURE_STATUSES = ['queued', 'running', 'succeeded', 'partial', 'failed'] as const;
export type CaptureStatus = (typeof CAPTURE_STATUSES)[number];

/** Events one capture may hold (the limit; larger documents are split by the sender). */
export const MAX_CAPTURE_EVENTS = 10_000;
