import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { addMonths, canTransition, namesPerson, overdueOf, priorityOf, retentionDecision, TRANSITIONS } from '../../server/services/cases';
import { loadConfig } from '../../server/config';

const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'downstream-unit-'));

describe('case rules (pure functions)', () => {
  it('ranks any step of severity above every likelihood', () => {
    const severeUnlikely = priorityOf({ scale: 3, scope: 3, irremediable: 3 }, 1);
    const milderCertain = priorityOf({ scale: 3, scope: 3, irremediable: 2 }, 4);
    expect(severeUnlikely.priority).toBeGreaterThan(milderCertain.priority);
    expect(priorityOf({ scale: 2, scope: 2, irremediable: 2 }, 3).priority).toBeGreaterThan(priorityOf({ scale: 2, scope: 2, irremediable: 2 }, 2).priority);
  });

  it('words the priority from severity alone, grave and irreversible harm being critical', () => {
    expect(priorityOf({ scale: 4, scope: 4, irremediable: 4 }, 1).level).toBe('critical');
    expect(priorityOf({ scale: 4, scope: 1, irremediable: 4 }, 1).level).toBe('critical');
    expect(priorityOf({ scale: 3, scope: 3, irremediable: 2 }, 4).level).toBe('high');
    expect(priorityOf({ scale: 2, scope: 2, irremediable: 2 }, 4).level).toBe('medium');
    expect(priorityOf({ scale: 1, scope: 1, irremediable: 1 }, 4).level).toBe('low');
  });

  it('allows only the workflow transitions, closing from anywhere and reopening only to investigating', () => {
    expect(canTransition('new', 'triaged')).toBe(true);
    expect(canTransition('new', 'action')).toBe(false);
    expect(canTransition('triaged', 'new')).toBe(false);
    expect(canTransition('action', 'remediation')).toBe(true);
    expect(canTransition('closed', 'investigating')).toBe(true);
    expect(canTransition('closed', 'new')).toBe(false);
    for (const from of Object.keys(TRANSITIONS) as Array<keyof typeof TRANSITIONS>) {
      if (from !== 'closed') expect(canTransition(from, 'closed')).toBe(true);
    }
  });

  it('computes overdue deadlines against the given time, never for closed cases', () => {
    const now = new Date('2026-03-01T00:00:00Z');
    const deadlines = { acknowledgeBy: new Date('2026-02-01'), acknowledgedAt: null, feedbackBy: new Date('2026-05-01'), reviewBy: null };
    expect(overdueOf({ status: 'new', deadlines }, now).map((o) => o.kind)).toEqual(['acknowledge']);
    expect(overdueOf({ status: 'new', deadlines: { ...deadlines, acknowledgedAt: new Date('2026-01-20') } }, now)).toEqual([]);
    expect(overdueOf({ status: 'closed', deadlines }, now)).toEqual([]);
    expect(overdueOf({ status: 'triaged', deadlines: { reviewBy: new Date('2026-02-28') } }, now).map((o) => o.kind)).toEqual(['review']);
  });

  it('deletes reporter data only after the period, and never under legal hold', () => {
    const closedAt = new Date('2024-01-01T00:00:00Z');
    const closed = { status: 'closed', closedAt, legalHold: { on: false }, retention: { reporterDataDeletedAt: null } };
    expect(retentionDecision(closed, addMonths(closedAt, 23), 24)).toBe('keep');
    expect(retentionDecision(closed, addMonths(closedAt, 24), 24)).toBe('delete');
    expect(retentionDecision({ ...closed, legalHold: { on: true } }, addMonths(closedAt, 30), 24)).toBe('hold');
    expect(retentionDecision({ ...closed, status: 'investigating' }, addMonths(closedAt, 30), 24)).toBe('keep');
    expect(retentionDecision({ ...closed, retention: { reporterDataDeletedAt: closedAt } }, addMonths(closedAt, 30), 24)).toBe('done');
  });

  it('reads the retention period from RETENTION_MONTHS (default 24), refusing nonsense', () => {
    expect(loadConfig({ DATA_DIR: dataDir }).retentionMonths).toBe(24);
    expect(loadConfig({ DATA_DIR: dataDir, RETENTION_MONTHS: '36' }).retentionMonths).toBe(36);
    for (const bad of ['0', '-3', 'two years', '1.5']) expect(() => loadConfig({ DATA_DIR: dataDir, RETENTION_MONTHS: bad })).toThrow(/RETENTION_MONTHS/);
  });

  it('finds a person named in a report by e-mail or full name, not by a lone first name', () => {
    const person = { email: 'jo.smith@corp.example', name: 'Jo Smith' };
    expect(namesPerson(['The dealer said JO.SMITH@corp.example approved it'], person)).toBe(true);
    expect(namesPerson(['Sold with help from jo  smith of sales'], person)).toBe(true);
    expect(namesPerson(['Jo was there'], person)).toBe(false);
    expect(namesPerson(['Jo Smithers was there'], person)).toBe(false);
    expect(namesPerson(['anything'], { email: 'x@y.example', name: 'Ana' })).toBe(false);
  });
});
