import { caseSubject, matchModels, matchUnits, mergeLinks } from '../../server/services/linker';

describe('linker rules (pure)', () => {
  const models = [
    { _id: 'CAM-4K', name: 'Skyline Camera 4K', publicName: 'Skyline 4K' },
    { _id: 'CAM-HD', name: 'Skyline Camera HD', publicName: null },
    { _id: 'RTR-1', name: 'Office Router', publicName: 'Router One' },
  ];

  it('links a model by SKU (any case and spacing) or exact name with high confidence', () => {
    expect(matchModels(' cam-4k ', models)).toEqual([expect.objectContaining({ kind: 'model', targetId: 'CAM-4K', confidence: 'high' })]);
    expect(matchModels('router ONE', models)).toEqual([expect.objectContaining({ targetId: 'RTR-1', confidence: 'high' })]);
    expect(matchModels('Skyline Camera HD', models)[0]).toMatchObject({ targetId: 'CAM-HD', confidence: 'high' });
  });

  it('links a resembling name with low confidence only, and nothing for an empty text', () => {
    const links = matchModels('skyline', models);
    expect(links.map((l) => [l.targetId, l.confidence])).toEqual([
      ['CAM-4K', 'low'],
      ['CAM-HD', 'low'],
    ]);
    expect(matchModels('   ', models)).toEqual([]);
    expect(matchModels('zz', models)).toEqual([]);
  });

  const unit = (id: string, modelId: string, extra = {}) => ({ _id: id, modelId, serial: 'SN1', registrationId: null, countries: [], ...extra });

  it('links the one unit carrying a serial with high confidence, with its registration, and says where it was seen', () => {
    const links = matchUnits('SN1', [unit('CAM-4K:SN1', 'CAM-4K', { registrationId: 'reg_1', countries: [{ country: 'KE' }] })], new Set(), 'KE');
    expect(links).toEqual([
      { kind: 'unit', targetId: 'CAM-4K:SN1', confidence: 'high', reason: 'serial SN1 matches exactly; unit known in KE' },
      { kind: 'registration', targetId: 'reg_1', confidence: 'high', reason: 'current registration of unit CAM-4K:SN1' },
    ]);
  });

  it('lowers confidence when the reported model disagrees, or the serial is shared between models', () => {
    expect(matchUnits('SN1', [unit('CAM-4K:SN1', 'CAM-4K')], new Set(['RTR-1']), 'KE')[0]!.confidence).toBe('medium');
    const shared = matchUnits('SN1', [unit('CAM-4K:SN1', 'CAM-4K'), unit('RTR-1:SN1', 'RTR-1')], new Set(['RTR-1']), 'KE');
    expect(shared.map((l) => [l.targetId, l.confidence])).toEqual([
      ['CAM-4K:SN1', 'low'],
      ['RTR-1:SN1', 'high'],
    ]);
    expect(matchUnits('SN1', [], new Set(), 'KE')).toEqual([]);
  });

  it('names the case subject only when one unit is the best match', () => {
    const models = new Map([['A:1', 'A'], ['B:1', 'B']]);
    expect(caseSubject([{ kind: 'unit', targetId: 'A:1', confidence: 'high' }, { kind: 'unit', targetId: 'B:1', confidence: 'low' }], (id) => models.get(id))).toEqual({ unitId: 'A:1', modelId: 'A' });
    expect(caseSubject([{ kind: 'unit', targetId: 'A:1', confidence: 'low' }, { kind: 'unit', targetId: 'B:1', confidence: 'low' }, { kind: 'model', targetId: 'M', confidence: 'high' }], (id) => models.get(id))).toEqual({ unitId: null, modelId: 'M' });
    expect(caseSubject([], () => undefined)).toEqual({ unitId: null, modelId: null });
  });

  it('keeps the most confident of duplicate links', () => {
    expect(mergeLinks([
      { kind: 'model', targetId: 'M', confidence: 'medium', reason: 'a' },
      { kind: 'model', targetId: 'M', confidence: 'high', reason: 'b' },
      { kind: 'unit', targetId: 'M', confidence: 'low', reason: 'c' },
    ])).toEqual([
      { kind: 'model', targetId: 'M', confidence: 'high', reason: 'b' },
      { kind: 'unit', targetId: 'M', confidence: 'low', reason: 'c' },
    ]);
  });
});
