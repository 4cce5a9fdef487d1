import request from 'supertest';
import { AuditEntry } from '../models/audit';
import { ScreeningEntity, ScreeningList } from '../models/screening';
import { createTestContext, type TestContext } from './helpers/context';
import { apiUser, signedInAgent } from './helpers/factories';
import { importSyntheticList, syntheticCsl, syntheticFtm } from './helpers/screening';

describe('restricted-party screening lists', () => {
  let ctx: TestContext;
  let admin: Awaited<ReturnType<typeof apiUser>>;
  let investigator: Awaited<ReturnType<typeof apiUser>>;

  beforeAll(async () => {
    ctx = await createTestContext();
    admin = await apiUser(ctx, 'admin');
    investigator = await apiUser(ctx, 'investigator');
    await importSyntheticList(ctx);
  });
  afterAll(() => ctx.close());

  describe('list import', () => {
    it('imports FtM JSON lines through the API, skipping non-party entities, and lists it with its count', async () => {
      const res = await request(ctx.app)
        .post('/api/v1/screening/lists')
        .set(admin.auth)
        .field({ listId: 'ftm-api', name: 'FtM via API', source: 'OpenSanctions (synthetic)', versionDate: '2026-02-01' })
        .attach('file', Buffer.from(syntheticFtm()), 'list.jsonl');
      expect(res.status).toBe(201);
      expect(res.body).toMatchObject({ entities: 6, skipped: 1, list: { id: 'ftm-api', format: 'ftm', entityCount: 6 } });
      const lists = await request(ctx.app).get('/api/v1/screening/lists').set(investigator.auth);
      expect(lists.body.lists.map((l: { id: string }) => l.id)).toEqual(expect.arrayContaining(['ftm-api', 'synthetic-sanctions']));
      expect(await ScreeningEntity.countDocuments({ listId: 'ftm-api' })).toBe(6);
    });

    it('replaces a list as a whole on re-import: the old import is gone and re-screening is requested', async () => {
      const first = await importSyntheticList(ctx, { listId: 'replaced', text: syntheticFtm() });
      const second = await importSyntheticList(ctx, { listId: 'replaced', text: syntheticFtm().split('\n').slice(0, 2).join('\n') });
      expect(second.entities).toBe(2);
      expect(await ScreeningEntity.countDocuments({ importId: first.list.activeImportId })).toBe(0);
      expect(await ScreeningEntity.countDocuments({ importId: second.list.activeImportId })).toBe(2);
      expect(await ScreeningList.findById('replaced').lean()).toMatchObject({ activeImportId: second.list.activeImportId, entityCount: 2 });
      expect((await request(ctx.app).get('/api/v1/screening/rescreen').set(admin.auth)).body.run).toMatchObject({ status: 'requested' });
      expect(await AuditEntry.countDocuments({ action: 'screening.list-imported', subjectId: 'replaced' })).toBe(2);
    });

    it('imports a CSL CSV through the admin page form', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const token = await agent.csrf('/admin/screening');
      const res = await agent.post('/admin/screening').field({ _csrf: token, listId: 'csl', name: 'Consolidated Screening List', source: 'trade.gov (synthetic)', versionDate: '2026-02-02' }).attach('file', Buffer.from(syntheticCsl()), 'csl.csv');
      expect(res.status).toBe(303);
      expect(await ScreeningList.findById('csl').lean()).toMatchObject({ format: 'csl', entityCount: 3 });
      expect((await agent.get('/admin/screening')).text).toContain('Consolidated Screening List');
    });

    it('refuses a file with a bad line, naming the line, and keeps what was typed', async () => {
      const { agent } = await signedInAgent(ctx, 'admin');
      const token = await agent.csrf('/admin/screening');
      const res = await agent.post('/admin/screening').field({ _csrf: token, listId: 'broken', name: 'Broken list', source: 'nowhere', versionDate: '2026-02-02' }).attach('file', Buffer.from('{"id":"a","schema":"Person","properties":{"name":["A B"]}}\n{oops'), 'bad.jsonl');
      expect(res.status).toBe(400);
      expect(res.text).toContain('Line 2 is not JSON');
      expect(res.text).toContain('value="Broken list"');
      expect(await ScreeningList.findById('broken').lean()).toBeNull();
    });

    it('names each bad field of an API import', async () => {
      const res = await request(ctx.app).post('/api/v1/screening/lists').set(admin.auth).field({ listId: 'X Y', name: '', source: 's', versionDate: 'yesterday' });
      expect(res.status).toBe(400);
      expect(Object.keys(res.body.error.fields).sort()).toEqual(['listId', 'name', 'versionDate']);
    });

    it('is for admins only', async () => {
      const res = await request(ctx.app).post('/api/v1/screening/lists').set(investigator.auth).field({ listId: 'x1', name: 'n', source: 's', versionDate: '2026-01-01' }).attach('file', Buffer.from(syntheticFtm()), 'l.jsonl');
      expect(res.status).toBe(403);
    });
  });

});
