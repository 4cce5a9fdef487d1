/** Post-shipment verification's vocabulary: plain values shared by the schemas, services and routes. */

export const VISIT_STATUSES = ['planned', 'done'] as const;
export type VisitStatus = (typeof VISIT_STATUSES)[number];

/** What a visit found of each unit it was to verify. */
export const UNIT_FINDINGS = ['seen', 'elsewhere', 'not-found'] as const;
export type UnitFinding = (typeof UNIT_FINDINGS)[number];
