import crypto from 'node:crypto';
import { ratio } from 'fuzzball';
import { ConflictError, ForbiddenError, NotFoundError, ValidationError } from '../../errors';
import type { Page } from '../../middleware/validate';
import type { ClauseKind, MaturityLevel, PartnerType, QuestionnaireStatus } from '../../domain/partners';
import type { RiskLevel } from '../../domain/catalogue';
import type { ScoredPartner } from '../../store/partners';
import { type PartnerActor, type PartnerDeps, partnerScope } from './context';
import { nameKey } from '../../domain/partners';
import { riskTier } from './risk';
import type { RequestFigures } from './requests';

/** A partner no case has sent a request. */
const NO_REQUESTS: RequestFigures = { overdueRequests: 0, medianAnswerDays: null };

/** Near-duplicate names: fuzzy ratio (0–100) of the folded names at or above this. */
export const MERGE_THRESHOLD = 85;

export interface PartnerInput {
  name: string;
  type: PartnerType;
  parentId: string | null;
  territories: string[];
  authorisedModels: string[];
  authorisedRiskLevels: RiskLevel[];
  clauses: Array<{ kind: ClauseKind; since: Date; until: Date | null }>;
  maturity: MaturityLevel;
  lastReviewAt: Date | null;
  nextReviewAt: Date | null;
}

/** Partner records, their users and API keys, the risk tier and the scorecard figures. */
type AssessmentInputs = { restricted: ReadonlySet<string>; riskLevels: Map<string, string>; caseStatus: Map<string, string>; figures: Map<string, RequestFigures> };

export function partnerRecords(deps: PartnerDeps, requests: { requestFigures(partnerIds: readonly string[] | null): Promise<Map<string, RequestFigures>> }) {
  const { clock, audit } = deps;
  const store = deps.stores.partners;
  const scope = partnerScope(deps);

  /** A parent must exist and must be a distributor; a partner cannot be its own ancestor. */
  async function checkParent(parentId: string | null, selfId: string | null) {
    if (!parentId) return;
    const parent = await store.partnerById(parentId);
    if (!parent) throw new ValidationError({ parentId: 'No such partner.' });
    if (parent.type !== 'distributor') throw new ValidationError({ parentId: 'Only a distributor can have partners under it.' });
    if (selfId && (parent._id === selfId || parent.parentId === selfId)) throw new ValidationError({ parentId: 'A partner cannot be under itself.' });
  }

  async function checkModels(ids: string[]) {
    const unknown = [];
    for (const id of ids) if (!(await deps.stores.catalogue.modelExists(id))) unknown.push(id);
    if (unknown.length) throw new ValidationError({ authorisedModels: `Unknown models: ${unknown.join(', ')}.` });
  }

  const fields = (input: PartnerInput) => ({
    name: input.name,
    nameKey: nameKey(input.name),
    type: input.type,
    parentId: input.parentId,
    territories: [...new Set(input.territories)].sort(),
    authorisedModels: [...new Set(input.authorisedModels)].sort(),
    authorisedRiskLevels: [...new Set(input.authorisedRiskLevels)],
    clauses: input.clauses,
    dueDiligence: { maturity: input.maturity, lastReviewAt: input.lastReviewAt, nextReviewAt: input.nextReviewAt },
  });

  /**
   * What the tiers and scorecards of these partners read besides the partners themselves,
   * read once for all of them: the restricted countries, their authorised models, the status of
   * the cases their flags opened or joined, and their requests' timing.
   */
  async function assessmentInputs(partners: readonly ScoredPartner[], requestFigures?: Map<string, RequestFigures>): Promise<AssessmentInputs> {
    const modelIds = [...new Set(partners.flatMap((p) => p.authorisedModels))];
    const [restricted, models, cases, figures] = await Promise.all([
      deps.flags.restrictedCountries(),
      Promise.all(modelIds.map((id) => deps.stores.catalogue.modelById(id))),
      store.caseStatuses(partners.flatMap((p) => p.caseIds)),
      requestFigures ?? requests.requestFigures(partners.map((p) => p._id)),
    ]);
    return { restricted, riskLevels: new Map(models.flatMap((m) => (m ? [[m._id, m.riskLevel] as const] : []))), caseStatus: new Map(cases.map((c) => [c._id, c.status])), figures };
  }

  /** The tier with its inputs, and the scorecard's figures (from counters kept on write). */
  function assess(partner: ScoredPartner, inputs: AssessmentInputs) {
    const now = clock.now();
    const levels = partner.authorisedRiskLevels.length ? partner.authorisedRiskLevels : partner.authorisedModels.length ? [] : ['low', 'elevated', 'high'];
    const modelLevels = partner.authorisedModels.flatMap((id) => inputs.riskLevels.get(id) ?? []);
    const cases = partner.caseIds.flatMap((id) => inputs.caseStatus.get(id) ?? []);
    const tallies = { allocated: partner.tallies?.allocated ?? 0, passedOn: partner.tallies?.passedOn ?? 0, sold: partner.tallies?.sold ?? 0, flags: partner.tallies?.flags ?? 0 };
    const nextReviewAt = partner.dueDiligence?.nextReviewAt ?? null;
    const questionnaire = partner.dueDiligence?.questionnaire ?? null;
    const risk = riskTier({
      territories: partner.territories,
      restrictedCountries: inputs.restricted,
      modelRiskLevels: [...levels, ...modelLevels],
      maturity: (partner.dueDiligence?.maturity ?? 'none') as MaturityLevel,
      questionnaire: questionnaire && { status: questionnaire.status as QuestionnaireStatus, no: questionnaire.answers.filter((a) => a.answer === 'no').length, partly: questionnaire.answers.filter((a) => a.answer === 'partly').length },
      nextReviewAt,
      allocated: tallies.allocated,
      flags: tallies.flags,
      cases: cases.length,
      now,
    });
    const held = tallies.allocated - tallies.passedOn;
    const scorecard = {
      ...tallies,
      completeness: held > 0 ? tallies.sold / held : null,
      flagsPerThousand: tallies.allocated ? (tallies.flags * 1000) / tallies.allocated : null,
      openCases: cases.filter((status) => status !== 'closed').length,
      closedCases: cases.filter((status) => status === 'closed').length,
      maturity: partner.dueDiligence?.maturity ?? 'none',
      dueDiligenceStatus: questionnaire?.status ?? 'not-answered',
      reviewOverdue: !nextReviewAt || nextReviewAt.getTime() < now.getTime(),
      ...(inputs.figures.get(partner._id) ?? NO_REQUESTS),
    };
    return { risk, scorecard };
  }

  /** The ranked scorecard table: highest risk first, then most flags per 1,000 units. */
  async function scorecards(page: Page) {
    // Every partner's requests are read beside the partners, not after them: one round trip fewer.
    const [partners, figures] = await Promise.all([store.scoredPartners(), requests.requestFigures(null)]);
    const inputs = await assessmentInputs(partners, figures);
    const rows = partners.map((partner) => ({ partner, ...assess(partner, inputs) }));
    rows.sort((a, b) => b.risk.score - a.risk.score || (b.scorecard.flagsPerThousand ?? 0) - (a.scorecard.flagsPerThousand ?? 0) || a.partner.name.localeCompare(b.partner.name));
    return { items: rows.slice(page.skip, page.skip + page.limit), total: rows.length };
  }

  /** Screens the partner's name (no country: a partner has territories, not a country of its own). */
  const screen = (id: string, name: string) => deps.screening.screenRecord({ kind: 'partner', id, unitId: null, parties: [{ role: 'partner', name, country: null }] });

  return {
    async createPartner(input: PartnerInput, actor: PartnerActor & { kind: 'staff' }) {
      await checkParent(input.parentId, null);
      await checkModels(input.authorisedModels);
      const now = clock.now();
      const id = `ptn_${crypto.randomBytes(10).toString('hex')}`;
      await store.insertPartner({ _id: id, ...fields(input), aliases: [], createdAt: now, updatedAt: now });
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'partner.created', subjectKind: 'partner', subjectId: id, detail: { name: input.name, type: input.type, parentId: input.parentId } });
      await screen(id, input.name);
      return (await store.partnerById(id))!;
    },

    async updatePartner(id: string, input: PartnerInput, actor: PartnerActor & { kind: 'staff' }) {
      await checkParent(input.parentId, id);
      await checkModels(input.authorisedModels);
      const before = await store.partnerById(id);
      // Field by field: the questionnaire and training attestations are not the form's to overwrite.
      const { dueDiligence, ...rest } = fields(input);
      const partner = await store.updatePartner(id, { ...rest, ...Object.fromEntries(Object.entries(dueDiligence).map(([k, v]) => [`dueDiligence.${k}`, v])), updatedAt: clock.now() });
      if (!partner) throw new NotFoundError('No such partner.');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'partner.updated', subjectKind: 'partner', subjectId: id, detail: { fields: Object.keys(input) } });
      if (before?.name !== partner.name) await screen(id, partner.name);
      return partner;
    },

    /** The partner with its risk tier (and inputs), scorecard and children, if `actor` may see it. */
    async getPartner(id: string, actor: PartnerActor) {
      const partner = await scope.visiblePartner(actor, id);
      const [inputs, children, parent] = await Promise.all([assessmentInputs([partner]), store.childrenOf(id), partner.parentId ? store.partnerById(partner.parentId) : null]);
      const assessed = assess(partner, inputs);
      return { partner, ...assessed, children, parent };
    },

    /** Staff: every partner; a partner: itself and its children. */
    async listPartners(actor: PartnerActor, page: Page) {
      const ids = await scope.visibleIds(actor);
      if (ids === null) return store.listPartners(page);
      const items = await store.partnersByIds(ids);
      return { items: items.slice(page.skip, page.skip + page.limit), total: items.length };
    },

    /** Every partner (a small collection) for pickers. */
    allPartners: () => store.allPartners(),

    scorecards,

    /** Every partner's scorecard for a download, audited as exports are. */
    async exportScorecards(actor: PartnerActor & { kind: 'staff' }) {
      const { items } = await scorecards({ page: 1, perPage: Number.MAX_SAFE_INTEGER, skip: 0, limit: Number.MAX_SAFE_INTEGER });
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'export.partner-scorecards', subjectKind: 'export', subjectId: 'partner-scorecards', detail: { rows: items.length } });
      return items;
    },

    /** A partner's user: an account of role `partner` that belongs to this partner. */
    async addPartnerUser(partnerId: string, input: { email: string; password: string; name: string }, actor: PartnerActor & { kind: 'staff' }) {
      const partner = await store.partnerById(partnerId);
      if (!partner) throw new NotFoundError('No such partner.');
      const user = await deps.auth.createUser({ ...input, organisation: partner.name }, 'partner');
      await store.addMember(`user:${String(user._id)}`, partnerId, clock.now());
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'partner.user-added', subjectKind: 'partner', subjectId: partnerId, detail: { userId: String(user._id) } });
      return user;
    },

    /** A `sell-through` API key bound to this partner; the full key is shown once. */
    async createPartnerKey(partnerId: string, name: string, actor: PartnerActor & { kind: 'staff' }) {
      const partner = await store.partnerById(partnerId);
      if (!partner) throw new NotFoundError('No such partner.');
      const created = await deps.auth.createApiKey({ name: `${partner.name}: ${name}`, scopes: ['sell-through'] }, actor.userId);
      await store.addMember(`key:${created.apiKey._id}`, partnerId, clock.now());
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'partner.api-key-created', subjectKind: 'partner', subjectId: partnerId, detail: { apiKeyId: created.apiKey._id } });
      return created;
    },

    /** The acting partner of a signed-in partner user or a partner's API key. */
    async actorFor(who: { userId: string } | { apiKeyId: string }): Promise<PartnerActor & { kind: 'partner' }> {
      const memberId = 'userId' in who ? `user:${who.userId}` : `key:${who.apiKeyId}`;
      const partnerId = await store.partnerOfMember(memberId);
      if (!partnerId) throw new ForbiddenError('This account or key does not belong to a channel partner.');
      return { kind: 'partner', partnerId, userId: 'userId' in who ? who.userId : null, apiKeyId: 'apiKeyId' in who ? who.apiKeyId : null };
    },

    /** Partners whose folded names are near each other (free text from older data, typos): merge candidates. */
    async nearDuplicates() {
      const partners = await store.allPartners();
      const pairs = [];
      for (let i = 0; i < partners.length; i++) {
        for (let j = i + 1; j < partners.length; j++) {
          const score = ratio(partners[i]!.nameKey, partners[j]!.nameKey);
          if (score >= MERGE_THRESHOLD) pairs.push({ a: partners[i]!, b: partners[j]!, score });
        }
      }
      return pairs.sort((x, y) => y.score - x.score);
    },

    async mergePartners(fromId: string, intoId: string, actor: PartnerActor & { kind: 'staff' }) {
      if (fromId === intoId) throw new ValidationError({ intoId: 'Choose two different partners.' });
      const [from, into] = await Promise.all([store.partnerById(fromId), store.partnerById(intoId)]);
      if (!from || !into) throw new NotFoundError('No such partner.');
      if (!(await store.mergePartners(fromId, intoId, [from.name, ...from.aliases]))) throw new ConflictError('This partner was merged meanwhile.');
      await audit.record({ actorKind: 'user', actorId: actor.userId, action: 'partner.merged', subjectKind: 'partner', subjectId: intoId, detail: { fromId, fromName: from.name } });
      return (await store.partnerById(intoId))!;
    },
  };
}
