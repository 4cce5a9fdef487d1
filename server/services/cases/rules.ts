import { HARM_CATEGORIES, type CaseStatus, type HarmCategory, type PriorityLevel } from '../../domain/cases';
import type { FlagRule } from '../../domain/flags';

/**
 * The rules of a case as pure functions: the workflow, priority, deadlines, retention and
 * conflicts of interest. No database: unit-testable as they are.
 */

export const DAY = 86_400_000;
/** EU Whistleblower Directive: acknowledge within 7 days, feedback within 3 months of that. */
export const ACKNOWLEDGE_WITHIN_DAYS = 7;
export const FEEDBACK_WITHIN_MONTHS = 3;
/** Flag-only cases get a review date instead, moved forward each time the case moves on. */
export const REVIEW_WITHIN_DAYS = 30;

export function addMonths(date: Date, months: number): Date {
  const d = new Date(date);
  d.setUTCMonth(d.getUTCMonth() + months);
  return d;
}

/**
 * The workflow, encoded once. Leaving `closed` is reopening and needs a reason like every
 * other move; entering `closed` also needs a closure reason.
 */
export const TRANSITIONS: Readonly<Record<CaseStatus, readonly CaseStatus[]>> = {
  new: ['triaged', 'closed'],
  triaged: ['investigating', 'closed'],
  investigating: ['action', 'remediation', 'closed'],
  action: ['investigating', 'remediation', 'closed'],
  remediation: ['action', 'closed'],
  closed: ['investigating'],
};

export const canTransition = (from: CaseStatus, to: CaseStatus) => TRANSITIONS[from].includes(to);

export interface Severity {
  scale: number;
  scope: number;
  irremediable: number;
}

/**
 * UNGP prioritisation: severity first, likelihood second. `priority` is a sort key in which
 * any increase in severity outranks every likelihood (likelihood adds 0–3, severity steps 4),
 * so a severe but uncertain case comes before a likely but minor one.
 */
export function priorityOf(severity: Severity, likelihood: number): { priority: number; level: PriorityLevel; severity: number } {
  const total = severity.scale + severity.scope + severity.irremediable;
  // Grave and irreversible harm (loss of life, torture) is critical however few are affected.
  const effective = severity.scale === 4 && severity.irremediable === 4 ? Math.max(total, 10) : total;
  const level: PriorityLevel = effective >= 10 ? 'critical' : effective >= 8 ? 'high' : effective >= 6 ? 'medium' : 'low';
  return { priority: effective * 4 + (likelihood - 1), level, severity: total };
}

export interface Deadlines {
  acknowledgeBy?: Date | null;
  acknowledgedAt?: Date | null;
  feedbackBy?: Date | null;
  feedbackGivenAt?: Date | null;
  reviewBy?: Date | null;
}

/** A report case's deadlines from its receipt. */
export function reportDeadlines(receivedAt: Date) {
  const acknowledgeBy = new Date(receivedAt.getTime() + ACKNOWLEDGE_WITHIN_DAYS * DAY);
  // Provisional until acknowledged: then it runs from the acknowledgement.
  return { acknowledgeBy, feedbackBy: addMonths(acknowledgeBy, FEEDBACK_WITHIN_MONTHS), reviewBy: null };
}

/** A flag case's deadline: a review, `REVIEW_WITHIN_DAYS` on. */
export const flagDeadlines = (now: Date) => ({ acknowledgeBy: null, feedbackBy: null, reviewBy: new Date(now.getTime() + REVIEW_WITHIN_DAYS * DAY) });

export type OverdueKind = 'acknowledge' | 'feedback' | 'review';

/** Which deadlines an open case has missed at `now`. Closed cases are never overdue. */
export function overdueOf(c: { status: string; deadlines?: Deadlines | null }, now: Date): Array<{ kind: OverdueKind; due: Date }> {
  const d = c.deadlines ?? {};
  if (c.status === 'closed') return [];
  const late: Array<{ kind: OverdueKind; due: Date }> = [];
  if (d.acknowledgeBy && !d.acknowledgedAt && d.acknowledgeBy < now) late.push({ kind: 'acknowledge', due: d.acknowledgeBy });
  if (d.feedbackBy && !d.feedbackGivenAt && d.feedbackBy < now) late.push({ kind: 'feedback', due: d.feedbackBy });
  if (d.reviewBy && d.reviewBy < now) late.push({ kind: 'review', due: d.reviewBy });
  return late;
}

/** Each open deadline with whole days left (negative once passed), soonest first. */
export function deadlinesAhead(c: { status: string; deadlines?: Deadlines | null }, now: Date): Array<{ kind: OverdueKind; due: Date; daysLeft: number }> {
  const d = c.deadlines ?? {};
  if (c.status === 'closed') return [];
  const open: Array<{ kind: OverdueKind; due: Date }> = [];
  if (d.acknowledgeBy && !d.acknowledgedAt) open.push({ kind: 'acknowledge', due: d.acknowledgeBy });
  if (d.feedbackBy && !d.feedbackGivenAt) open.push({ kind: 'feedback', due: d.feedbackBy });
  if (d.reviewBy) open.push({ kind: 'review', due: d.reviewBy });
  return open
    .map((x) => ({ ...x, daysLeft: Math.floor((x.due.getTime() - now.getTime()) / DAY) }))
    .sort((a, b) => a.due.getTime() - b.due.getTime());
}

/**
 * The harm a red flag suggests before anyone has triaged: a restricted country or a
 * high-risk end user puts people's life, liberty and security at stake; an end use outside
 * the intended ones is, for these products, surveillance. Diversion signals (a country
 * mismatch, an unregistered or unknown serial, an unnotified transfer) suggest no harm of
 * their own, and a misuse report brings the reporter's own categories.
 */
export const HARM_OF_FLAG_RULE: Readonly<Record<FlagRule, readonly HarmCategory[]>> = {
  'restricted-country': ['life-liberty-security'],
  'high-risk-end-user': ['life-liberty-security'],
  'end-use-outside-intended': ['privacy-surveillance'],
  'country-mismatch': [],
  'unregistered-check-in': [],
  'unknown-serial': [],
  'unnotified-transfer': [],
  'misuse-report': [],
  // A listed party: sanctions and restricted-party lists name those who put people at risk.
  'restricted-party': ['life-liberty-security'],
  // Paperwork, visits and the sales channel: signals of diversion, with no harm of their own.
  'certificate-missing': [],
  'certificate-expired': [],
  'certificate-over-quantity': [],
  'verification-failed': [],
  'sale-outside-territory': [],
  'unauthorised-model-sale': [],
  'unallocated-unit-sale': [],
  'unit-sold-twice': [],
  'unapproved-high-risk-sale': [],
  'sale-country-mismatch': [],
  'unreported-sale': [],
};

/** What pre-fills triage's harm categories, and from where: the reports' own, then the flags' rules. */
export function harmSuggestions(reports: ReadonlyArray<{ id: string; harmCategories: readonly string[] }>, rules: readonly string[]): Array<{ category: HarmCategory; from: string }> {
  const out = new Map<HarmCategory, string>();
  for (const r of reports) for (const h of r.harmCategories) if ((HARM_CATEGORIES as readonly string[]).includes(h) && !out.has(h as HarmCategory)) out.set(h as HarmCategory, `report ${r.id}`);
  for (const rule of rules) for (const h of HARM_OF_FLAG_RULE[rule as FlagRule] ?? []) if (!out.has(h)) out.set(h, `red flag ${rule.replace(/-/g, ' ')}`);
  return [...out].map(([category, from]) => ({ category, from }));
}

export type RetentionDecision = 'keep' | 'hold' | 'delete' | 'done';

/**
 * Reporter data (contact details, messages, evidence) goes `months` after closure unless a
 * legal hold suspends it. The case itself stays, with a trace of what was deleted and when.
 */
export function retentionDecision(
  c: { status: string; closedAt?: Date | null; legalHold?: { on?: boolean | null } | null; retention?: { reporterDataDeletedAt?: Date | null } | null },
  now: Date,
  months: number,
): RetentionDecision {
  if (c.retention?.reporterDataDeletedAt) return 'done';
  if (c.status !== 'closed' || !c.closedAt || addMonths(c.closedAt, months) > now) return 'keep';
  return c.legalHold?.on ? 'hold' : 'delete';
}

/**
 * Whether a report names this person (their e-mail, or their full name as words): such an
 * investigator has a conflict of interest in the case.
 */
export function namesPerson(texts: readonly string[], person: { email: string; name: string }): boolean {
  const haystack = texts.join('\n').toLowerCase();
  if (person.email && haystack.includes(person.email.toLowerCase())) return true;
  const name = person.name.trim().toLowerCase().replace(/\s+/g, ' ');
  if (name.split(' ').length < 2) return false; // a lone first name is too common to mean this person
  const escaped = name.replace(/[.*+?^${}()|[\]\\]/g, '\\$&').replace(/ /g, '\\s+');
  return new RegExp(`(^|[^\\p{L}])${escaped}($|[^\\p{L}])`, 'u').test(haystack);
}

/** Every string inside a value (a report as the reports service gives it). */
export function stringsIn(value: unknown, out: string[] = []): string[] {
  if (typeof value === 'string') out.push(value);
  else if (Array.isArray(value)) for (const v of value) stringsIn(v, out);
  else if (value && typeof value === 'object' && !(value instanceof Date)) for (const v of Object.values(value)) stringsIn(v, out);
  return out;
}

/** What the reporter sees of the case's progress on their follow-up page. */
export type ReporterStatus = 'received' | 'acknowledged' | 'under-investigation' | 'closed';

/** The case's status, as the reporter's follow-up page words it. */
export const reporterStatusOf = (status: CaseStatus): ReporterStatus | null =>
  status === 'closed' ? 'closed' : status === 'new' ? null : 'under-investigation';
