/** The auth module's vocabulary: roles and API key scopes (schema, rules and routes share it). */
export const ROLES = ['admin', 'investigator', 'customer'] as const;
export type Role = (typeof ROLES)[number];

export const API_KEY_SCOPES = ['check-ins', 'epcis:capture', 'epcis:query'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** User ids are MongoDB ObjectIds as 24 hex digits; anything else names nobody. */
export const isUserId = (id: string) => /^[0-9a-f]{24}$/i.test(id);
