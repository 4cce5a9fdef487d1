/** The auth module's vocabulary: roles and API key scopes (schema, rules and routes share it). */
/** `partner`: a user of one channel partner, who sees only that partner's records (and its child partners'). */
export const ROLES = ['admin', 'investigator', 'customer', 'partner'] as const;
export type Role = (typeof ROLES)[number];

/** `sell-through`: a channel partner's key, bound to that partner (partners module). */
export const API_KEY_SCOPES = ['check-ins', 'epcis:capture', 'epcis:query', 'sell-through'] as const;
export type ApiKeyScope = (typeof API_KEY_SCOPES)[number];

/** User ids are MongoDB ObjectIds as 24 hex digits; anything else names nobody. */
export const isUserId = (id: string) => /^[0-9a-f]{24}$/i.test(id);
