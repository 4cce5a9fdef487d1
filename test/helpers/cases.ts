import crypto from 'node:crypto';
import type { Role } from '../../models/auth';
import { Report } from '../../models/reports';
import type { Actor, TriageInput } from '../../server/services/cases';
import type { TestContext } from './context';
import { apiUser } from './factories';
import { pngImage } from './reports';

/**
 * Case factories. Reports are stored directly (the public form's challenge and rate limits
 * are the reporting module's to test) and then opened as cases through the cases service,
 * exactly as a submitted report is.
 */

export const actorOf = (user: { _id: unknown; role: Role }): Actor => ({ id: String(user._id), role: user.role });

/** An investigator (or admin) with a Bearer token and the actor the service takes. */
export async function makeStaff(ctx: TestContext, role: 'investigator' | 'admin' = 'investigator') {
  const made = await apiUser(ctx, role);
  return { ...made, actor: actorOf(made.user) };
}

/** A new Bearer header for `user` (after the test clock moved past a token's lifetime). */
export async function freshAuth(ctx: TestContext, user: Parameters<TestContext['services']['auth']['issueSession']>[0]) {
  const { token } = await ctx.services.auth.issueSession(user);
  return { Authorization: `Bearer ${token}` };
}

export interface ReportCaseFields {
  unitId?: string | null;
  modelId?: string | null;
  country?: string;
  description?: string;
  contact?: { name: string; organisation?: string; email: string } | null;
  withEvidence?: boolean;
}

/** A report (with contact details and an evidence file unless told otherwise) and its case. */
export async function makeReportCase(ctx: TestContext, fields: ReportCaseFields = {}) {
  const now = ctx.clock.now();
  const reportId = `rpt_${crypto.randomBytes(12).toString('hex')}`;
  const evidence = fields.withEvidence === false ? [] : [await ctx.services.files.store({ buffer: await pngImage(), originalname: 'entrance.png' }, 'evidence')];
  const contact = fields.contact === undefined ? { name: 'Achieng Otieno', organisation: 'Haki Watch', email: 'achieng@haki.example' } : fields.contact;
  await Report.create({
    _id: reportId,
    reporterKind: 'ngo',
    anonymous: !contact,
    contact: contact ? { organisation: '', ...contact } : null,
    product: { serials: [], modelText: '', deviceDescription: '' },
    where: { country: fields.country ?? 'KE', place: 'Nairobi' },
    what: { harmCategories: ['privacy-surveillance'], description: fields.description ?? 'Cameras record every visitor of a clinic.', affected: 'Patients', ongoing: 'yes' },
    evidence: evidence.map((e) => ({ ...e, addedAt: now, addedBy: 'reporter' })),
    // As the linker proposes them: the named unit, unconfirmed.
    links: fields.unitId ? [{ kind: 'unit', targetId: fields.unitId, confidence: 'high', reason: 'serial matches the catalogue' }] : [],
    status: 'received',
    receivedAt: now,
    updatedAt: now,
  });
  const { caseId } = await ctx.services.cases.openOrAttachForReport({
    id: reportId,
    receivedAt: now,
    title: `Misuse report ${reportId.slice(0, 12)}`,
    unitId: fields.unitId ?? null,
    modelId: fields.modelId ?? null,
    country: fields.country ?? 'KE',
  });
  await Report.updateOne({ _id: reportId }, { $set: { caseId } });
  return { reportId, caseId, evidence };
}

/** A red-flag case on a unit (raised through the flags service, as check-ins do). */
export async function makeFlagCase(ctx: TestContext, subject: { unitId: string; modelId: string; country?: string }, rule: 'country-mismatch' | 'restricted-country' = 'country-mismatch') {
  const { flagId, caseId } = await ctx.services.flags.raise(
    { rule, evidence: { checkInCountry: subject.country ?? 'SY', registeredCountry: 'KE' } },
    { unitId: subject.unitId, modelId: subject.modelId, country: subject.country ?? 'SY' },
    { kind: 'check-in', id: `ci_${crypto.randomBytes(6).toString('hex')}` },
  );
  return { flagId, caseId };
}

/** Triage input that passes every check; override any of it. */
export const triageFields = (fields: Partial<TriageInput> = {}): TriageInput => ({
  harmCategories: ['privacy-surveillance'],
  scale: 3,
  scope: 2,
  irremediable: 3,
  likelihood: 2,
  involvement: 'directly-linked',
  involvementRationale: 'Our cameras are used by a third party to watch a clinic.',
  ...fields,
});
