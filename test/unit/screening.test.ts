import fs from 'node:fs';
import path from 'node:path';
import { blockingKeys, createBlockingIndex, entityFingerprint, normaliseName, partyFingerprint, scoreParty, screenAgainst, type ListEntity } from '../../server/services/screening/matching';
import { parseCslCsv, parseFtmLines } from '../../server/services/screening/lists';

const fixtures = path.join(__dirname, '..', 'fixtures', 'screening');
const ftm = parseFtmLines(fs.readFileSync(path.join(fixtures, 'synthetic-sanctions.ftm.jsonl'), 'utf8'), 'synthetic').entities;
const csl = parseCslCsv(fs.readFileSync(path.join(fixtures, 'synthetic-csl.csv'), 'utf8'), 'csl').entities;
const entity = (id: string) => [...ftm, ...csl].find((e) => e.entityId === id)!;

/** Defaults of SCREENING_MATCH_THRESHOLD and SCREENING_CUTOFF. */
const THRESHOLD = 0.8;
const CUTOFF = 0.6;

describe('screening: normalisation (pure)', () => {
  it('folds case, diacritics, punctuation and hyphens', () => {
    expect(normaliseName('Jon Smyth-Doe').tokens).toEqual(['jon', 'smyth', 'doe']);
    expect(normaliseName("Société Générale d'Équipements").tokens).toEqual(['societe', 'generale', 'd', 'equipements']);
  });
  it('transliterates Cyrillic to Latin', () => {
    expect(normaliseName('Иван Петров').tokens).toEqual(['ivan', 'petrov']);
  });
  it('drops company forms, OOO and ООО among them', () => {
    expect(normaliseName('ООО Ромашка').tokens).toEqual(['romashka']);
    expect(normaliseName('Romashka LLC').tokens).toEqual(['romashka']);
    expect(normaliseName('Müller GmbH').tokens).toEqual(['muller']);
  });
  it('compares names regardless of token order', () => {
    expect(normaliseName('Petrov Ivan').sorted).toBe(normaliseName('Ivan Petrov').sorted);
  });
});

describe('screening: scoring on the synthetic list (pure)', () => {
  it('matches Jon Smyth-Doe to John Smith Doe above the threshold, naming the tokens', () => {
    const match = scoreParty({ name: 'Jon Smyth-Doe' }, entity('syn-p-001'));
    expect(match.score).toBeGreaterThanOrEqual(THRESHOLD);
    expect(match.explanation.entityName).toBe('John Smith Doe');
    expect(match.explanation.tokens).toEqual([
      { party: 'jon', entity: 'john', similarity: expect.any(Number) },
      { party: 'smyth', entity: 'smith', similarity: expect.any(Number) },
      { party: 'doe', entity: 'doe', similarity: 1 },
    ]);
    expect(match.explanation.summary).toContain('smyth~smith');
  });

  it('matches Иван Петров to Ivan Petrov', () => {
    const match = scoreParty({ name: 'Иван Петров', country: 'RU' }, entity('syn-p-002'));
    expect(match.score).toBeGreaterThanOrEqual(THRESHOLD);
    expect(match.explanation.features.country).toBe('agrees');
  });

  it('matches ООО Ромашка to Romashka LLC', () => {
    const match = scoreParty({ name: 'ООО Ромашка' }, entity('syn-c-003'));
    expect(match.score).toBeGreaterThanOrEqual(THRESHOLD);
    expect(match.explanation.tokens).toEqual([{ party: 'romashka', entity: 'romashka', similarity: 1 }]);
  });

  it('scores an unrelated name below the cutoff against every entity', () => {
    for (const e of [...ftm, ...csl]) expect(scoreParty({ name: 'Nairobi Clinic Ltd' }, e).score).toBeLessThan(CUTOFF);
  });

  it('counts a different country or birth date against a match, and a shared identifier for it', () => {
    const same = scoreParty({ name: 'Reza Karimi Tehrani' }, entity('csl-002')).score;
    expect(scoreParty({ name: 'Reza Karimi Tehrani', country: 'CA' }, entity('csl-002')).score).toBeLessThan(same);
    expect(scoreParty({ name: 'Reza Karimi Tehrani', birthDate: '1990-01-01' }, entity('csl-002')).score).toBeLessThan(same);
    expect(scoreParty({ name: 'R. Karimi', identifiers: ['K-1234567'] }, entity('csl-002')).score).toBeGreaterThanOrEqual(0.97);
  });

  it('does not score a name that is only part of a listed one as the whole', () => {
    expect(scoreParty({ name: 'Ivan' }, entity('syn-p-002')).score).toBeLessThan(THRESHOLD);
  });
});

describe('screening: blocking (pure)', () => {
  it('finds the listed entity as a candidate of each variant, and not of an unrelated name', () => {
    const index = createBlockingIndex([...ftm, ...csl]);
    const candidates = (name: string) => index.candidates(blockingKeys([name])).map((e) => e.entityId);
    expect(candidates('Jon Smyth-Doe')).toContain('syn-p-001');
    expect(candidates('Иван Петров')).toContain('syn-p-002');
    expect(candidates('ООО Ромашка')).toContain('syn-c-003');
    expect(candidates('Nairobi Clinic Ltd')).toEqual([]);
  });

  it('keeps only the matches at or above the cutoff, best first', () => {
    const index = createBlockingIndex([...ftm, ...csl]);
    const party = { name: 'Petrov, Ivan' };
    const matches = screenAgainst(party, index.candidates(blockingKeys([party.name])), CUTOFF);
    expect(matches[0]!.entity.entityId).toBe('syn-p-002');
    expect(matches.every((m) => m.score >= CUTOFF)).toBe(true);
  });
});

describe('screening: list files (pure)', () => {
  it('reads FtM parties with names, aliases, countries, birth dates, identifiers and programs, skipping other schemata', () => {
    const { entities, skipped } = parseFtmLines(fs.readFileSync(path.join(fixtures, 'synthetic-sanctions.ftm.jsonl'), 'utf8'), 'synthetic');
    expect(skipped).toBe(1);
    expect(entities).toHaveLength(6);
    expect(entity('syn-p-001')).toMatchObject({ entityType: 'Person', names: ['John Smith Doe', 'J. S. Doe', 'Johnny Doe'], countries: ['GB'], birthDates: ['1971-03-14'], identifiers: ['GB-551209'], programs: ['SYN-ARMS-2024'] });
  });

  it('reads CSL rows with alternative names split and the countries of addresses', () => {
    expect(csl).toHaveLength(3);
    expect(entity('csl-001')).toMatchObject({ names: ['Zhongshan Vision Systems Co. Ltd', 'Zhong Shan Vision', 'ZVS Technology'], countries: ['CN'], entityType: 'Organization' });
    expect(entity('csl-002')).toMatchObject({ entityType: 'Person', birthDates: ['1975-11-20'], identifiers: ['K1234567'] });
  });

  it('refuses a line that is not JSON, naming it', () => {
    expect(() => parseFtmLines('{"id":"a","schema":"Person","properties":{"name":["A B"]}}\nnot json', 'x')).toThrow(expect.objectContaining({ fields: { file: expect.stringContaining('Line 2') } }));
  });

  it('changes the fingerprints when the party or the entity changes', () => {
    const e: ListEntity = entity('syn-p-002');
    expect(partyFingerprint({ name: 'Ivan Petrov', country: 'RU' })).toBe(partyFingerprint({ name: 'PETROV  Ivan', country: 'RU' }));
    expect(partyFingerprint({ name: 'Ivan Petrov', country: 'RU' })).not.toBe(partyFingerprint({ name: 'Ivan Petrov', country: 'BY' }));
    expect(entityFingerprint({ ...e, names: [...e.names, 'Vanya Petrov'] })).not.toBe(entityFingerprint(e));
  });
});
