import crypto from 'node:crypto';

/** A stored check-in as the summariser folds it. */
export interface Entry {
  id: string;
  batchId: string;
  serial: string;
  model: string | null;
  unitId: string | null;
  firmware: string;
  observedAt: Date;
  country: string;
}

/** A flag's id from the check-in that showed it and the rule: a batch folded twice raises nothing twice. */
export const checkInFlagId = (checkInId: string, rule: string) => `flg_${crypto.createHash('sha256').update(`${checkInId}|${rule}`).digest('hex').slice(0, 20)}`;
