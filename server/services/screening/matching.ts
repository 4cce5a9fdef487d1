import crypto from 'node:crypto';
import * as fuzz from 'fuzzball';
import { transliterate } from 'transliteration';

/**
 * Restricted-party matching as pure functions: how a name is normalised, which blocking keys
 * find its candidates, and how a party scores against a list entity, with the explanation an
 * investigator reads before deciding. No database, no clock.
 */

/**
 * Company-form words, as they read after transliteration and lower-casing (ООО → ooo). They
 * say what kind of legal person it is, not who: `ООО Ромашка` and `Romashka LLC` are one name.
 */
const COMPANY_FORMS = new Set([
  'llc', 'ltd', 'limited', 'inc', 'incorporated', 'corp', 'corporation', 'co', 'company', 'plc', 'llp', 'lp',
  'gmbh', 'ag', 'kg', 'ug', 'mbh', 'sarl', 'sa', 'sas', 'sasu', 'eurl', 'srl', 'spa', 'bv', 'nv', 'oy', 'ab', 'as', 'aps',
  'ooo', 'oao', 'zao', 'pao', 'ao', 'tov', 'fzc', 'fze', 'fzco', 'llc-fz', 'jsc', 'pjsc', 'ojsc', 'cjsc', 'sp', 'zoo', 'pte', 'pty', 'bhd', 'sdn',
]);

export interface NormalisedName {
  /** The name as given. */
  original: string;
  /** Meaningful tokens, in the given order (Latin, lower case, no company forms). */
  tokens: string[];
  /** Tokens sorted: the order-free form compared by the whole-name ratios. */
  sorted: string;
}

/**
 * Case, diacritics, Cyrillic and Arabic script (transliterated to Latin), punctuation and
 * hyphens, company forms. A name made only of company forms keeps them (it is all there is).
 */
export function normaliseName(name: string): NormalisedName {
  const latin = transliterate(name.normalize('NFKC'))
    .normalize('NFKD')
    .replace(/\p{M}+/gu, '')
    .toLowerCase();
  const all = latin.split(/[^a-z0-9]+/).filter(Boolean);
  const meaningful = all.filter((t) => !COMPANY_FORMS.has(t));
  const tokens = meaningful.length ? meaningful : all;
  return { original: name, tokens, sorted: [...tokens].sort().join(' ') };
}

/**
 * A token's sound skeleton: its first letter, then its consonants with h, w, y dropped and
 * doubles collapsed, so `smith`/`smyth`, `jon`/`john` and `petrov`/`petroff` share a key.
 * Tokens too short to have a skeleton are their own key.
 */
export function phoneticKey(token: string): string {
  const folded = token.replace(/ph/g, 'f').replace(/ck/g, 'k').replace(/ff$/, 'v');
  const rest = folded.slice(1).replace(/[aeiouhwy]/g, '');
  const skeleton = (folded[0] + rest).replace(/(.)\1+/g, '$1');
  return skeleton.length >= 2 ? `p:${skeleton}` : `t:${token}`;
}

/** The blocking keys of a set of name variants: a candidate must share keys with the party. */
export function blockingKeys(names: readonly string[]): string[] {
  return [...new Set(names.flatMap((n) => normaliseName(n).tokens.map(phoneticKey)))];
}

/**
 * How many keys a candidate must share with the party: two when both have two or more (one
 * shared given name is not a candidate), else one.
 */
export const keysNeeded = (partyKeys: number, entityKeys: number) => Math.max(1, Math.min(2, partyKeys, entityKeys));

export interface Party {
  name: string;
  country?: string | null;
  birthDate?: string | null;
  identifiers?: readonly string[];
}

export interface ListEntity {
  entityId: string;
  listId: string;
  /** Person, Organization, Company or LegalEntity (the FtM schema). */
  entityType: string;
  names: string[];
  countries: string[];
  birthDates: string[];
  identifiers: string[];
  programs: string[];
}

export interface TokenPair {
  party: string;
  entity: string | null;
  similarity: number;
}

export interface Explanation {
  partyName: string;
  entityName: string;
  /** Each party token with the entity token it matched (null: none did). */
  tokens: TokenPair[];
  features: { tokenSet: number; ratio: number; tokens: number; country: 'agrees' | 'differs' | 'unknown'; birthDate: 'agrees' | 'differs' | 'unknown'; identifier: 'agrees' | 'unknown' };
  summary: string;
}

export interface Match {
  score: number;
  explanation: Explanation;
}

/** Tokens at least this similar (fuzzball ratio, 0–100) count as the same token. */
const TOKEN_MATCH = 75;

/** Each party token paired with its most similar entity token, and the other way round. */
function alignTokens(party: readonly string[], entity: readonly string[]) {
  const best = (token: string, others: readonly string[]) => {
    let found: { token: string | null; similarity: number } = { token: null, similarity: 0 };
    for (const other of others) {
      const similarity = fuzz.ratio(token, other);
      if (similarity > found.similarity) found = { token: other, similarity };
    }
    return found.similarity >= TOKEN_MATCH ? found : { token: null, similarity: found.similarity };
  };
  const pairs = party.map((t) => {
    const b = best(t, entity);
    return { party: t, entity: b.token, similarity: b.token ? b.similarity / 100 : 0 };
  });
  const back = entity.map((t) => (best(t, party).token ? best(t, party).similarity / 100 : 0));
  const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : 0);
  // Both directions: an extra token on either side (a subset name) costs, as it should.
  return { pairs, score: (mean(pairs.map((p) => p.similarity)) + mean(back)) / 2 };
}

function nameScore(party: NormalisedName, entity: NormalisedName) {
  const tokenSet = fuzz.token_set_ratio(party.sorted, entity.sorted, { full_process: false }) / 100;
  const ratio = fuzz.ratio(party.sorted, entity.sorted, { full_process: false }) / 100;
  const aligned = alignTokens(party.tokens, entity.tokens);
  // The token alignment carries most: it is what explains `Smyth`~`Smith` and penalises a
  // name that is only a part of the other, which the token-set ratio scores as whole.
  return { score: 0.25 * tokenSet + 0.15 * ratio + 0.6 * aligned.score, tokenSet, ratio, tokens: aligned.score, pairs: aligned.pairs };
}

/**
 * An entity's names normalised once per entity object: re-screening scores each listed entity
 * against many parties, and transliterating its names every time was most of the cost.
 */
const normalisedCache = new WeakMap<ListEntity, NormalisedName[]>();
function normalisedNames(entity: ListEntity): NormalisedName[] {
  let names = normalisedCache.get(entity);
  if (!names) normalisedCache.set(entity, (names = entity.names.map(normaliseName)));
  return names;
}

const normaliseId = (id: string) => id.toUpperCase().replace(/[^A-Z0-9]/g, '');

/**
 * The party against every name variant of the entity: the best variant's name score, then
 * moved by what else is known. A shared identifier is near-certain; a different birth date
 * or country counts against; agreement adds a little (names carry the match).
 */
export function scoreParty(party: Party, entity: ListEntity, partyName: NormalisedName = normaliseName(party.name)): Match {
  let best: (ReturnType<typeof nameScore> & { variant: string }) | null = null;
  for (const variant of normalisedNames(entity)) {
    const s = nameScore(partyName, variant);
    if (!best || s.score > best.score) best = { ...s, variant: variant.original };
  }
  const name = best ?? { score: 0, tokenSet: 0, ratio: 0, tokens: 0, pairs: [], variant: '' };

  const country: Explanation['features']['country'] = !party.country || !entity.countries.length ? 'unknown' : entity.countries.includes(party.country.toUpperCase()) ? 'agrees' : 'differs';
  const birthDate: Explanation['features']['birthDate'] = !party.birthDate || !entity.birthDates.length ? 'unknown' : entity.birthDates.some((d) => d.startsWith(party.birthDate!) || party.birthDate!.startsWith(d)) ? 'agrees' : 'differs';
  const ids = new Set(entity.identifiers.map(normaliseId));
  const identifier: Explanation['features']['identifier'] = (party.identifiers ?? []).some((id) => ids.has(normaliseId(id))) ? 'agrees' : 'unknown';

  let score = name.score;
  if (country === 'agrees') score += 0.05;
  if (country === 'differs') score -= 0.1;
  if (birthDate === 'agrees') score += 0.05;
  if (birthDate === 'differs') score -= 0.15;
  if (identifier === 'agrees') score = Math.max(score, 0.97);
  score = Math.round(Math.min(1, Math.max(0, score)) * 1000) / 1000;

  const matched = name.pairs.filter((p) => p.entity).map((p) => (p.party === p.entity ? p.party : `${p.party}~${p.entity}`));
  const unmatched = name.pairs.filter((p) => !p.entity).map((p) => p.party);
  const summary = [
    `"${party.name}" ~ "${name.variant}"`,
    matched.length ? `tokens ${matched.join(', ')}` : 'no token in common',
    unmatched.length ? `unmatched ${unmatched.join(', ')}` : '',
    `token set ${Math.round(name.tokenSet * 100)}%`,
    country !== 'unknown' ? `country ${country}` : '',
    birthDate !== 'unknown' ? `birth date ${birthDate}` : '',
    identifier === 'agrees' ? 'identifier agrees' : '',
  ].filter(Boolean).join('; ');

  return {
    score,
    explanation: {
      partyName: party.name,
      entityName: name.variant,
      tokens: name.pairs.map((p) => ({ party: p.party, entity: p.entity, similarity: Math.round(p.similarity * 100) / 100 })),
      features: { tokenSet: name.tokenSet, ratio: name.ratio, tokens: Math.round(name.tokens * 1000) / 1000, country, birthDate, identifier },
      summary,
    },
  };
}

/**
 * What a recorded decision is about: the party as screened and the entity as listed. A false
 * positive is remembered under both, so it comes back only when either changes.
 */
export function partyFingerprint(party: Party): string {
  return digest([normaliseName(party.name).sorted, party.country ?? '', party.birthDate ?? '', [...(party.identifiers ?? [])].sort().join(',')].join('|'));
}

export function entityFingerprint(entity: ListEntity): string {
  return digest([[...entity.names].sort().join('|'), [...entity.countries].sort().join(','), [...entity.birthDates].sort().join(','), [...entity.identifiers].sort().join(',')].join('#'));
}

/** The false-positive memory's key: this party as screened, this entity as listed. */
export const clearanceKey = (h: { partyFingerprint: string; entity: { listId: string; entityId: string }; entityFingerprint: string }) => `${h.partyFingerprint}|${h.entity.listId}:${h.entity.entityId}|${h.entityFingerprint}`;

const digest = (text: string) => crypto.createHash('sha256').update(text).digest('hex').slice(0, 24);

/**
 * An in-memory blocking index over list entities: what re-screening holds while it walks the
 * stored parties (the stored `_id`-keyed key documents serve one name at a time).
 */
export function createBlockingIndex(entities: Iterable<ListEntity>) {
  const byKey = new Map<string, number[]>();
  const all: Array<{ entity: ListEntity; keys: number }> = [];
  for (const entity of entities) {
    const keys = blockingKeys(entity.names);
    const at = all.push({ entity, keys: keys.length }) - 1;
    for (const key of keys) {
      const list = byKey.get(key);
      if (list) list.push(at);
      else byKey.set(key, [at]);
    }
  }
  return {
    size: all.length,
    /** Entities sharing enough blocking keys with the party. */
    candidates(partyKeys: readonly string[]): ListEntity[] {
      const shared = new Map<number, number>();
      for (const key of partyKeys) for (const at of byKey.get(key) ?? []) shared.set(at, (shared.get(at) ?? 0) + 1);
      const out: ListEntity[] = [];
      for (const [at, n] of shared) if (n >= keysNeeded(partyKeys.length, all[at]!.keys)) out.push(all[at]!.entity);
      return out;
    },
  };
}

/** Screens one party against candidates: the matches at or above `cutoff`, best first. */
export function screenAgainst(party: Party, candidates: readonly ListEntity[], cutoff: number): Array<Match & { entity: ListEntity }> {
  const name = normaliseName(party.name);
  return candidates
    .map((entity) => ({ ...scoreParty(party, entity, name), entity }))
    .filter((m) => m.score >= cutoff)
    .sort((a, b) => b.score - a.score);
}
