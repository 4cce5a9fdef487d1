import crypto from 'node:crypto';
import type { Clock } from '../../clock';
import type { Config } from '../../config';
import { NotFoundError } from '../../errors';
import type { Logger } from '../../logger';
import type { LimitsStore } from '../../store/limits';
import type { ReportRecord, ReportsStore } from '../../store/reports';
import type { AuditService } from '../audit';
import type { CasesService } from '../cases';
import type { CatalogueService } from '../catalogue';
import type { FilesService } from '../files';
import type { FlagsService } from '../flags';
import type { LinkerService } from '../linker';
import type { NotificationsService } from '../notifications';
import type { WebhookEmitter } from '../webhooks';

/** What every part of the reporting channel is built from (server/services/index.ts). */
export interface ReportsDeps {
  config: Config;
  clock: Clock;
  stores: { limits: LimitsStore; reports: ReportsStore };
  logger?: Pick<Logger, 'error'>;
  files: FilesService;
  cases: CasesService;
  audit: AuditService;
  catalogue: Pick<CatalogueService, 'searchPublicModels'>;
  flags: Pick<FlagsService, 'rules' | 'recordOnCase'>;
  linker: Pick<LinkerService, 'linkDirect' | 'registrationLinksFor'>;
  webhooks: WebhookEmitter;
  /** Reporters who opted in are told there is news (never what). */
  notifications: Pick<NotificationsService, 'tellReporterOfNews'>;
}

export const MINUTE = 60_000;

export const hmac = (key: crypto.BinaryLike, data: string) => crypto.createHmac('sha256', key).update(data).digest();

/** The report by `_id`, or a 404. */
export async function reportOf(store: ReportsStore, reportId: string): Promise<ReportRecord> {
  const report = await store.reportById(reportId);
  if (!report) throw new NotFoundError('No such report.');
  return report;
}
