import crypto from 'node:crypto';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import mongoose from 'mongoose';
import { EJSON } from 'bson';
import request from 'supertest';
import { Report, ReportKey } from '../models/reports';
import { loadConfig } from '../server/config';
import { createLogger } from '../server/logger';
import { createServices } from '../server/services';
import { createReceiptHasher } from '../server/services/reports';
import { createStores } from '../server/store';
import { runMigrations } from '../server/store/migrations';
import { actorOf, makeReportCase } from './helpers/cases';
import { createTestContext, testEnv, type TestContext } from './helpers/context';
import { signedInAgent, unique } from './helpers/factories';
import { digitsOf, evidenceBytes, pngImage, reportAgent, reportAsRead, reportFields, sha256, solvedChallenge } from './helpers/reports';

/** Every document of every collection of the test's database, as the raw driver reads it. */
async function wholeDatabase(): Promise<string> {
  const db = mongoose.connection.db!;
  const parts: string[] = [];
  for (const { name } of await db.listCollections().toArray()) parts.push(EJSON.stringify(await db.collection(name).find({}).toArray()));
  return parts.join('\n');
}

/** A download's body as bytes, whatever its type. */
const binary = (res: request.Response, done: (err: Error | null, body: Buffer) => void) => {
  const stream = res as unknown as NodeJS.ReadableStream;
  const chunks: Buffer[] = [];
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('end', () => done(null, Buffer.concat(chunks)));
};

/** Every file under a directory, concatenated: a byte search of it. */
function wholeDirectory(dir: string): Buffer {
  const files = fs.readdirSync(dir, { recursive: true, withFileTypes: true }).filter((d) => d.isFile());
  return Buffer.concat(files.map((d) => fs.readFileSync(path.join(d.parentPath, d.name))));
}

describe('reports encrypted at rest', () => {
  let ctx: TestContext;
  beforeAll(async () => {
    ctx = await createTestContext({ TRUST_PROXY: '1', RATE_LIMIT_PUBLIC_POST_PER_MIN: '10000', REPORT_SUBMISSIONS_PER_10MIN: '1000', REPORT_POW_BITS: '8' });
  });
  afterAll(() => ctx.close());

  let ip = 0;
  const nextIp = () => `10.77.${Math.floor(++ip / 250)}.${ip % 250}`;

  /** A report with a contact, a description and one PNG, through the public API. */
  async function fileWithEvidence(fields: Record<string, unknown>, png: Buffer) {
    const { challenge, pow } = await solvedChallenge(ctx);
    const req = request(ctx.app).post('/api/v1/reports').set('X-Forwarded-For', nextIp()).set('X-Report-Challenge', challenge).field('challenge', challenge).field('pow', pow);
    for (const [k, v] of Object.entries(reportFields(fields))) for (const item of [v].flat()) req.field(k, String(item));
    const res = await req.attach('evidence', png, 'photo.png');
    expect(res.status).toBe(201);
    const report = (await Report.findById(await createReceiptHasher(ctx.config.jwt.secret)(digitsOf(res.body.receipt))).lean())!;
    return { receipt: res.body.receipt as string, reportId: report._id, caseId: report.caseId!, fileId: report.evidence[0]!.fileId };
  }

  /** A PNG whose pixels spell a marker no other file has, so its bytes can be searched for. */
  async function markedPng() {
    const png = await pngImage();
    return { png, marker: png.subarray(png.length / 2 - 16, png.length / 2 + 16) };
  }

  it('keeps the description, contact, messages and evidence out of the database and the data directory, and shows them to the investigator and the reporter', async () => {
    const phrase = unique('clinic cameras film every patient at night');
    const name = unique('Wanjiru Kamau');
    const email = `${unique('wanjiru')}@haki.example`;
    const reply = unique('The cameras were put up in March');
    const question = unique('When were the cameras installed?');
    const { png } = await markedPng();
    const filed = await fileWithEvidence({ description: phrase, contactName: name, contactEmail: email }, png);
    const agent = reportAgent(ctx, nextIp());
    expect((await request(ctx.app).post('/api/v1/follow-up/messages').set('X-Forwarded-For', nextIp()).send({ receipt: filed.receipt, text: reply })).status).toBe(201);

    const investigator = await signedInAgent(ctx, 'investigator');
    await ctx.services.cases.assign(filed.caseId, String(investigator.user._id), actorOf(investigator.user));
    await ctx.services.reports.postInvestigatorMessage(filed.reportId, String(investigator.user._id), question);
    const stored = await evidenceBytes(ctx, filed.reportId, filed.fileId);
    const storedMarker = stored.subarray(stored.length / 2 - 16, stored.length / 2 + 16);

    const database = await wholeDatabase();
    for (const secret of [phrase, name, email, reply, question]) expect(database).not.toContain(secret);
    const disk = wholeDirectory(ctx.config.dataDir);
    for (const secret of [phrase, name, email, reply, question]) expect(disk.includes(Buffer.from(secret))).toBe(false);
    expect(disk.includes(storedMarker)).toBe(false);
    // What linking and figures need stays plain.
    expect((await Report.findById(filed.reportId).lean())!).toMatchObject({ sealed: true, where: { country: 'KE' }, what: { harmCategories: ['privacy-surveillance'] } });

    const casePage = await investigator.agent.get(`/cases/${filed.caseId}`);
    expect(casePage.status).toBe(200);
    expect(casePage.text).toContain(phrase);
    expect(casePage.text).toContain(reply);
    const download = await investigator.agent.get(`/cases/${filed.caseId}/reports/${filed.reportId}/evidence/${filed.fileId}`).buffer(true).parse(binary);
    expect(download.status).toBe(200);
    expect(sha256(download.body as Buffer)).toBe(sha256(stored));
    expect((download.body as Buffer).includes(storedMarker)).toBe(true);

    const followUp = await agent.followUp(filed.receipt);
    expect(followUp.status).toBe(200);
    expect(followUp.text).toContain(phrase);
    expect(followUp.text).toContain(question);
  });

  it('generates the development master key into the data directory, readable by its owner only', () => {
    const file = path.join(ctx.config.dataDir, 'encryption-key');
    expect(fs.statSync(file).mode & 0o777).toBe(0o600);
    expect(Buffer.from(fs.readFileSync(file, 'utf8').trim(), 'base64').equals(ctx.config.encryption.key)).toBe(true);
  });

  it('refuses to start in production without ENCRYPTION_KEY, and names the variable when its value is not 32 bytes of base64', () => {
    const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-key-'));
    try {
      expect(() => loadConfig(testEnv({ DATA_DIR: dataDir, NODE_ENV: 'production' }))).toThrow(/ENCRYPTION_KEY: required when NODE_ENV=production/);
      expect(() => loadConfig(testEnv({ DATA_DIR: dataDir, ENCRYPTION_KEY: Buffer.alloc(16).toString('base64') }))).toThrow(/ENCRYPTION_KEY: base64 of 32 random bytes/);
      const given = crypto.randomBytes(32);
      expect(loadConfig(testEnv({ DATA_DIR: dataDir, ENCRYPTION_KEY: given.toString('base64') })).encryption.key.equals(given)).toBe(true);
      expect(fs.existsSync(path.join(dataDir, 'encryption-key'))).toBe(false); // a given key is never written to disk
    } finally {
      fs.rmSync(dataDir, { recursive: true, force: true });
    }
  });

  it('opens every report after the master key is rotated, with progress, and a second run finds nothing left', async () => {
    const phrases = [unique('rotated one'), unique('rotated two'), unique('rotated three')];
    const ids = [];
    for (const description of phrases) ids.push((await fileWithEvidence({ description }, (await markedPng()).png)).reportId);

    const newKey = crypto.randomBytes(32);
    const during = { ...ctx.config, encryption: { key: newKey, previousKey: ctx.config.encryption.key } };
    const servicesDuring = createServices({ config: during, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
    // While the rotation is pending, an instance with both keys reads old reports already.
    expect((await servicesDuring.reports.getReportForStaff(ids[0]!)).what?.description).toBe(phrases[0]);
    const progress: Array<[number, number]> = [];
    const result = await servicesDuring.reports.rotateDataKeys((done, total) => progress.push([done, total]));
    expect(result.unknownMasterKeys).toEqual([]);
    expect(result.rewrapped).toBe(result.total);
    expect(result.total).toBeGreaterThanOrEqual(3);
    expect(progress.at(-1)).toEqual([result.total, result.total]);
    expect((await servicesDuring.reports.rotateDataKeys()).total).toBe(0);

    // After: the new key alone opens every report and file; the old key alone opens none.
    const after = createServices({ config: { ...ctx.config, encryption: { key: newKey, previousKey: null } }, clock: ctx.clock, logger: createLogger('silent'), stores: createStores(ctx.db.engine) });
    for (const [i, id] of ids.entries()) {
      const report = await after.reports.getReportForStaff(id);
      expect(report.what?.description).toBe(phrases[i]);
      const { stream } = await after.reports.openEvidence(id, report.evidence[0]!.fileId);
      const chunks: Buffer[] = [];
      for await (const chunk of stream) chunks.push(chunk as Buffer);
      expect(sha256(Buffer.concat(chunks))).toBe(report.evidence[0]!.sha256);
    }
    await expect(ctx.services.reports.getReportForStaff(ids[0]!)).rejects.toThrow(/neither ENCRYPTION_KEY nor ENCRYPTION_KEY_PREVIOUS/);
  });

  it('destroys the data key on retention, so that what is left of the report cannot be read', async () => {
    const phrase = unique('shredded testimony');
    const filed = await fileWithEvidence({ description: phrase, contactName: unique('Shredded Name') }, (await markedPng()).png);
    const sealedBefore = (await Report.findById(filed.reportId).lean())!.what!.description;
    expect(await ReportKey.exists({ _id: filed.reportId })).toBeTruthy();

    await ctx.services.reports.deleteReporterData(filed.reportId);

    expect(await ReportKey.exists({ _id: filed.reportId })).toBeNull();
    // The sealed description is still in the document (a backup holds it too), and nothing opens it.
    expect((await Report.findById(filed.reportId).lean())!.what!.description).toBe(sealedBefore);
    const read = await reportAsRead(ctx, filed.reportId);
    expect(read).toMatchObject({ shredded: true, contact: null, messages: [], evidence: [], what: { description: '' } });
    const followUp = await reportAgent(ctx, nextIp()).followUp(filed.receipt);
    expect(followUp.status).toBe(200);
    expect(followUp.text).not.toContain(phrase);
    await expect(ctx.services.reports.postInvestigatorMessage(filed.reportId, 'usr_x', 'Anyone there?')).rejects.toMatchObject({ status: 409 });
  });

  it('seals reports and files written in the clear when migrating, and they read as before', async () => {
    const phrase = unique('written before encryption');
    const old = await makeReportCase(ctx, { description: phrase });
    await Report.updateOne({ _id: old.reportId }, { $push: { messages: { _id: 'msg_old', from: 'reporter', kind: 'message', userId: null, text: `${phrase} (message)`, at: ctx.clock.now() } }, $inc: { messageCount: 1 } });
    const clearFile = path.join(ctx.config.dataDir, 'files', old.evidence[0]!.fileId.slice(0, 2), old.evidence[0]!.fileId);
    const clearBytes = fs.readFileSync(clearFile);
    expect((await reportAsRead(ctx, old.reportId)).what?.description).toBe(phrase); // read as it is before the migration

    const lines: string[] = [];
    const applied = await runMigrations(ctx.db.engine, { clearReports: ctx.services.reports.clearReports, progress: (line) => lines.push(line) });
    expect(applied).toContain('004-report-encryption');
    expect(lines.some((l) => /migrated \d+ \/ \d+ reports/.test(l))).toBe(true);

    const raw = EJSON.stringify(await Report.collection.findOne({ _id: old.reportId } as never));
    expect(raw).not.toContain(phrase);
    expect(raw).not.toContain('achieng@haki.example');
    expect(fs.existsSync(clearFile)).toBe(false);
    const disk = wholeDirectory(ctx.config.dataDir);
    expect(disk.includes(clearBytes.subarray(clearBytes.length / 2 - 16, clearBytes.length / 2 + 16))).toBe(false);

    const read = await reportAsRead(ctx, old.reportId);
    expect(read).toMatchObject({ sealed: true, contact: { email: 'achieng@haki.example' }, what: { description: phrase } });
    expect(read.messages.map((m) => m.text)).toEqual([`${phrase} (message)`]);
    expect(await evidenceBytes(ctx, old.reportId, read.evidence[0]!.fileId)).toEqual(clearBytes);
    expect(await Report.countDocuments({ sealed: { $ne: true } })).toBe(0);
  });
});
