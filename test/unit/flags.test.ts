import { knownCountries, rules, SETTLED_AFTER_CHECK_INS } from '../../server/services/flags';

describe('red-flag rules (pure)', () => {
  describe('restrictedCountry', () => {
    const restricted = new Set(['KP', 'IR']);
    it('holds for a country on the list, naming where it was seen', () => {
      expect(rules.restrictedCountry('KP', restricted, 'check-in')).toEqual({ rule: 'restricted-country', evidence: { country: 'KP', where: 'check-in' } });
    });
    it('does not hold for other countries, a missing country or an empty list', () => {
      expect(rules.restrictedCountry('KE', restricted, 'registration')).toBeNull();
      expect(rules.restrictedCountry(null, restricted, 'transfer')).toBeNull();
      expect(rules.restrictedCountry(undefined, restricted, 'transfer')).toBeNull();
      expect(rules.restrictedCountry('KP', new Set(), 'check-in')).toBeNull();
    });
  });

  describe('highRiskEndUser', () => {
    it('holds for a high-risk model with police, military or unknown end users', () => {
      for (const type of ['police-security', 'military', 'unknown'] as const) {
        expect(rules.highRiskEndUser('high', type)).toEqual({ rule: 'high-risk-end-user', evidence: { riskLevel: 'high', endUserType: type } });
      }
    });
    it('does not hold for lower risk levels or other end users', () => {
      expect(rules.highRiskEndUser('elevated', 'military')).toBeNull();
      expect(rules.highRiskEndUser('low', 'unknown')).toBeNull();
      expect(rules.highRiskEndUser('high', 'commercial-company')).toBeNull();
      expect(rules.highRiskEndUser('high', null)).toBeNull();
    });
  });

  describe('endUseOutsideIntended', () => {
    const intended = ['Office networking', 'Home networking'];
    it('does not hold for an intended use, whatever its case or spacing', () => {
      expect(rules.endUseOutsideIntended(intended, '  office NETWORKING ', 'our office')).toBeNull();
    });
    it('does not hold when the model lists no intended uses', () => {
      expect(rules.endUseOutsideIntended([], 'other', 'anything')).toBeNull();
    });
    it('holds for other uses, keeping at most 500 characters of the declaration', () => {
      const hit = rules.endUseOutsideIntended(intended, 'other', 'x'.repeat(600));
      expect(hit?.rule).toBe('end-use-outside-intended');
      expect(hit?.evidence).toMatchObject({ intendedUses: intended, chosen: 'other' });
      expect((hit?.evidence.declaredEndUse as string).length).toBe(500);
    });
  });

  describe('countryMismatch', () => {
    it('holds when a check-in comes from elsewhere than the registered country', () => {
      expect(rules.countryMismatch('UG', 'KE')).toEqual({ rule: 'country-mismatch', evidence: { checkInCountry: 'UG', registeredCountry: 'KE' } });
    });
    it('does not hold in the registered country, or when no country is registered', () => {
      expect(rules.countryMismatch('KE', 'KE')).toBeNull();
      expect(rules.countryMismatch('KE', null)).toBeNull();
      expect(rules.countryMismatch('KE', undefined)).toBeNull();
    });
  });

  describe('unregisteredCheckIn', () => {
    it('tells a serial the catalogue lacks from a catalogued unit never registered', () => {
      expect(rules.unregisteredCheckIn(null, 'SN1', 'M1')).toEqual({ rule: 'unknown-serial', evidence: { serial: 'SN1', modelSku: 'M1' } });
      expect(rules.unregisteredCheckIn({ status: 'unregistered' }, 'SN1', 'M1')).toEqual({ rule: 'unregistered-check-in', evidence: { serial: 'SN1', modelSku: 'M1' } });
    });
    it('does not hold for a registered unit or one with a transfer pending', () => {
      expect(rules.unregisteredCheckIn({ status: 'registered' }, 'SN1', 'M1')).toBeNull();
      expect(rules.unregisteredCheckIn({ status: 'transfer-pending' }, 'SN1', 'M1')).toBeNull();
    });
  });

  describe('unnotifiedTransfer', () => {
    const run = (country: string, count: number) => ({ country, count, firstAt: new Date('2026-02-01T00:00:00Z') });
    it(`holds once a run of ${SETTLED_AFTER_CHECK_INS} check-ins settles in a country nobody told us about`, () => {
      expect(rules.unnotifiedTransfer(run('TZ', SETTLED_AFTER_CHECK_INS), new Set(['KE']))).toEqual({
        rule: 'unnotified-transfer',
        evidence: { country: 'TZ', checkIns: SETTLED_AFTER_CHECK_INS, since: '2026-02-01T00:00:00.000Z' },
      });
    });
    it('does not hold for a short trip, a known country or no run', () => {
      expect(rules.unnotifiedTransfer(run('TZ', SETTLED_AFTER_CHECK_INS - 1), new Set(['KE']))).toBeNull();
      expect(rules.unnotifiedTransfer(run('TZ', 40), new Set(['KE', 'TZ']))).toBeNull();
      expect(rules.unnotifiedTransfer(null, new Set())).toBeNull();
      expect(rules.unnotifiedTransfer(undefined, new Set())).toBeNull();
    });
  });

  describe('knownCountries', () => {
    it('counts first sale, registrations, transfers, the current country and pending transfers, not check-ins', () => {
      const unit = {
        current: { country: 'UG' },
        countries: [
          { country: 'KE', source: 'first-sale' },
          { country: 'RW', source: 'registration' },
          { country: 'ET', source: 'transfer' },
          { country: 'SO', source: 'check-in' },
        ],
      };
      expect([...knownCountries(unit, ['TZ'])].sort()).toEqual(['ET', 'KE', 'RW', 'TZ', 'UG']);
      expect([...knownCountries({}, [])]).toEqual([]);
    });
  });
});
