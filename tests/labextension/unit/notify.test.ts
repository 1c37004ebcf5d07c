// Which notifications a change of sessions or batches deserves.
import { describe, expect, it } from 'vitest';

import { INotifyOptions, NotificationPlanner, countsText } from '../../../src/notify';
import { IBatch, ISession } from '../../../src/types';

const T0 = Date.parse('2026-11-21T13:00:00Z');
const OPTIONS: INotifyOptions = {
  leadMinutes: 10,
  available: true,
  finished: true,
  batches: true,
  timeZone: 'UTC'
};

function session(phase: string, extra: Partial<ISession> = {}): ISession {
  return {
    key: 'alpha/1111',
    broker: 'alpha',
    uuid: '11112222-3333',
    name: 'analysis.ipynb',
    phase,
    final: ['COMPLETED', 'FAILED', 'CANCELLED'].includes(phase),
    platform: 'local',
    start: new Date(T0 + 3600_000).toISOString(),
    end: null,
    duration_s: 1800,
    duration: '30 min',
    resources: '1 core, 1 GiB',
    connectors: [],
    outputs: [],
    messages: [],
    error: '',
    notebook: null,
    lab_path: null,
    created: new Date(T0 - 60_000).toISOString(),
    modified: new Date(T0 - 60_000).toISOString(),
    ...extra
  };
}

describe('NotificationPlanner', () => {
  it('announces nothing that was already so when the page loaded', () => {
    const planner = new NotificationPlanner(T0);
    const listed = [
      session('COMPLETED'),
      session('RUNNING', { key: 'alpha/2', connectors: [{ kind: 'http', location: 'http://x', link: true }] })
    ];
    expect(planner.sessions(listed, T0, OPTIONS)).toEqual([]);
  });

  it('reminds once, within the lead time, in the SDK phrases', () => {
    const planner = new NotificationPlanner(T0);
    const booked = session('WAITING');
    expect(planner.sessions([booked], T0, OPTIONS)).toEqual([]);
    expect(planner.nextReminder([booked], T0, OPTIONS)).toBe(50 * 60_000);
    const later = T0 + 52 * 60_000;
    const toasts = planner.sessions([booked], later, OPTIONS);
    expect(toasts.map(t => t.kind)).toEqual(['soon']);
    expect(toasts[0].message).toBe(
      'analysis.ipynb on alpha will be available soon: starts in 8 min (Sat 21 Nov 14:00 UTC), for 30 min'
    );
    expect(planner.sessions([booked], later + 60_000, OPTIONS)).toEqual([]);
    expect(planner.nextReminder([booked], later, OPTIONS)).toBeNull();
  });

  it('keeps reminders shown across reloads and honours a lead time of 0', () => {
    const first = new NotificationPlanner(T0);
    first.sessions([session('WAITING')], T0 + 55 * 60_000, OPTIONS);
    const reloaded = new NotificationPlanner(T0 + 56 * 60_000, first.reminded);
    expect(reloaded.sessions([session('WAITING')], T0 + 56 * 60_000, OPTIONS)).toEqual([]);
    const off = new NotificationPlanner(T0);
    expect(off.sessions([session('WAITING')], T0 + 55 * 60_000, { ...OPTIONS, leadMinutes: 0 })).toEqual([]);
  });

  it('announces AVAILABLE with its link, then COMPLETED with the output notebook', () => {
    const planner = new NotificationPlanner(T0);
    planner.sessions([session('WAITING')], T0, OPTIONS);
    const link = { kind: 'http', location: 'http://127.0.0.1:9999/lab?token=t', link: true };
    const available = planner.sessions([session('AVAILABLE', { connectors: [link] })], T0, OPTIONS);
    expect(available).toMatchObject([{ kind: 'available', type: 'success', link: link.location }]);
    expect(available[0].message).toBe('analysis.ipynb on alpha is AVAILABLE');
    expect(planner.sessions([session('RUNNING', { connectors: [link] })], T0, OPTIONS)).toEqual([]);
    const output = { name: 'notebook', path: '/root/out/analysis.ipynb', lab_path: 'out/analysis.ipynb' };
    const done = planner.sessions([session('COMPLETED', { outputs: [output] })], T0, OPTIONS);
    expect(done).toMatchObject([{ kind: 'completed', labPath: 'out/analysis.ipynb' }]);
  });

  it('announces a failure with its reason, and each event only once', () => {
    const planner = new NotificationPlanner(T0);
    planner.sessions([session('RUNNING')], T0, OPTIONS);
    const failed = session('FAILED', { error: 'cell 3: ZeroDivisionError' });
    const toasts = planner.sessions([failed], T0, OPTIONS);
    expect(toasts).toMatchObject([
      { kind: 'failed', type: 'error', message: 'analysis.ipynb on alpha FAILED: cell 3: ZeroDivisionError' }
    ]);
    expect(planner.sessions([failed], T0, OPTIONS)).toEqual([]);
  });

  it('announces a short run started from code that ended between two polls', () => {
    const planner = new NotificationPlanner(T0);
    planner.sessions([], T0, OPTIONS);
    const quick = session('COMPLETED', { key: 'alpha/new', modified: new Date(T0 + 5000).toISOString() });
    expect(planner.sessions([quick], T0 + 6000, OPTIONS).map(t => t.kind)).toEqual(['completed']);
  });

  it('follows a session accepted here even before it is listed', () => {
    const planner = new NotificationPlanner(T0);
    planner.track(session('ACCEPTED', { key: 'alpha/mine' }));
    const toasts = planner.sessions([session('COMPLETED', { key: 'alpha/mine' })], T0, OPTIONS);
    expect(toasts.map(t => t.kind)).toEqual(['completed']);
  });

  it('respects the settings', () => {
    const planner = new NotificationPlanner(T0);
    planner.sessions([session('WAITING')], T0, OPTIONS);
    const quiet = { ...OPTIONS, available: false, finished: false };
    expect(planner.sessions([session('AVAILABLE')], T0, quiet)).toEqual([]);
    expect(planner.sessions([session('COMPLETED')], T0, quiet)).toEqual([]);
  });

  it('announces a batch that finished, with its counts', () => {
    const planner = new NotificationPlanner(T0);
    const batch: IBatch = {
      id: 'b1',
      name: 'fits-run',
      notebook: 'analysis.ipynb',
      total: 200,
      counts: { COMPLETED: 150, RUNNING: 50 },
      done: false,
      finished: null,
      error: null,
      failed: []
    };
    expect(planner.batches([batch], OPTIONS)).toEqual([]);
    const done = { ...batch, counts: { COMPLETED: 190, FAILED: 10 }, done: true };
    expect(planner.batches([done], OPTIONS)).toMatchObject([
      { kind: 'batch', type: 'error', message: 'Batch fits-run finished: 190 COMPLETED, 10 FAILED', batch: 'b1' }
    ]);
    expect(planner.batches([done], OPTIONS)).toEqual([]);
    const old = new NotificationPlanner(T0);
    expect(old.batches([{ ...done, id: 'b0', finished: new Date(T0 - 1000).toISOString() }], OPTIONS)).toEqual([]);
  });

  it('orders counts largest first', () => {
    expect(countsText({ FAILED: 10, COMPLETED: 190, RUNNING: 0 })).toBe('190 COMPLETED, 10 FAILED');
  });
});
