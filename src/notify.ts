/**
 * Which notifications to show, decided from successive session and batch lists.
 *
 * Pure logic (no JupyterLab here): `NotificationPlanner` remembers the phase it last saw for
 * each session and returns the toasts a change deserves:
 *
 * - `soon`: a booked session starts within the lead time (once per session);
 * - `available`: it became AVAILABLE (or RUNNING with a link to open);
 * - `completed` / `failed`: it ended so;
 * - `batch`: a batch finished, with its counts per phase.
 *
 * What was already so when the page loaded is not announced (a reload would repeat every
 * toast), but a session first seen after a change since the page loaded is (a short run
 * started from code between two polls).
 */

import { humanDuration, localTime, parseTime, relative } from './format';
import { BOOKED_PHASES, IBatch, ISession } from './types';

export type ToastKind = 'soon' | 'available' | 'completed' | 'failed' | 'batch';

export interface IToast {
  kind: ToastKind;
  /** Unique per event: the same toast is never shown twice. */
  key: string;
  type: 'info' | 'success' | 'error';
  message: string;
  /** A connector to open (available). */
  link?: string;
  /** A file to open in JupyterLab (an output notebook), and the cell to show. */
  labPath?: string;
  cell?: number;
  /** The batch to show (batch). */
  batch?: string;
}

export interface INotifyOptions {
  leadMinutes: number;
  available: boolean;
  finished: boolean;
  batches: boolean;
  timeZone?: string;
}

function title(s: ISession): string {
  return `${s.name || s.uuid.slice(0, 8)} on ${s.broker}`;
}

/** `190 COMPLETED, 10 FAILED`: the largest count first. */
export function countsText(counts: Record<string, number>): string {
  return Object.entries(counts)
    .filter(([, n]) => n)
    .sort((a, b) => b[1] - a[1] || a[0].localeCompare(b[0]))
    .map(([phase, n]) => `${n} ${phase}`)
    .join(', ');
}

/** The output notebook of a session, when JupyterLab can open it. */
export function outputNotebook(s: ISession): string | undefined {
  const out = s.outputs.find(o => o.name === 'notebook' && o.lab_path);
  return out?.lab_path ?? undefined;
}

export class NotificationPlanner {
  /**
   * @param loadedAt when the page loaded (ms): what ended before is old news.
   * @param reminded keys of reminders already shown (kept across reloads by the caller).
   */
  constructor(loadedAt: number, reminded: Set<string> = new Set()) {
    this._loadedAt = loadedAt;
    this.reminded = reminded;
  }

  /** Keys of the `soon` reminders shown. */
  readonly reminded: Set<string>;

  /** A session accepted here: its later changes are announced even if never listed before. */
  track(session: ISession): void {
    this._phases.set(session.key, session.phase);
  }

  /** The toasts for a new list of sessions (and remember their phases). */
  sessions(list: ISession[], now: number, options: INotifyOptions): IToast[] {
    const toasts: IToast[] = [];
    for (const s of list) {
      const before = this._phases.get(s.key);
      this._phases.set(s.key, s.phase);
      const reminder = this._reminder(s, now, options);
      if (reminder) {
        toasts.push(reminder);
      }
      if (before === s.phase) {
        continue;
      }
      // announce what was seen live before, or what is new and changed since the page loaded
      const seenLive = before !== undefined && !this._final(before);
      const changedSinceLoad = (parseTime(s.modified) ?? 0) >= this._loadedAt;
      const announce = seenLive || (before === undefined && changedSinceLoad);
      const change = this._change(s, before, announce, options);
      if (change && !this._shown.has(change.key)) {
        this._shown.add(change.key);
        toasts.push(change);
      }
    }
    return toasts;
  }

  /** The toasts for a new list of batches: those that finished since the last list. */
  batches(list: IBatch[], options: INotifyOptions): IToast[] {
    const toasts: IToast[] = [];
    for (const b of list) {
      const before = this._batches.get(b.id);
      this._batches.set(b.id, b.done);
      const finishedSinceLoad = (parseTime(b.finished) ?? 0) >= this._loadedAt;
      const news = before === false || (before === undefined && finishedSinceLoad);
      if (!b.done || !news || !options.batches) {
        continue;
      }
      const failed = b.counts['FAILED'] ?? 0;
      toasts.push({
        kind: 'batch',
        key: `batch:${b.id}`,
        type: failed ? 'error' : 'success',
        message: `Batch ${b.name || b.id} finished: ${countsText(b.counts)}`,
        batch: b.id
      });
    }
    return toasts;
  }

  /**
   * When the next reminder falls due (ms from `now`), so that a timer can show it on time
   * between two polls; null when none is pending.
   */
  nextReminder(list: ISession[], now: number, options: INotifyOptions): number | null {
    if (options.leadMinutes <= 0) {
      return null;
    }
    let next: number | null = null;
    for (const s of list) {
      const start = parseTime(s.start);
      if (!BOOKED_PHASES.includes(s.phase) || start === null) {
        continue;
      }
      if (this.reminded.has(this._reminderKey(s))) {
        continue;
      }
      const due = start - options.leadMinutes * 60_000 - now;
      if (start > now && (next === null || due < next)) {
        next = Math.max(0, due);
      }
    }
    return next;
  }

  private _reminderKey(s: ISession): string {
    return `soon:${s.key}:${s.start}`;
  }

  private _reminder(s: ISession, now: number, options: INotifyOptions): IToast | null {
    const start = parseTime(s.start);
    if (options.leadMinutes <= 0 || start === null || !BOOKED_PHASES.includes(s.phase)) {
      return null;
    }
    const left = start - now;
    const key = this._reminderKey(s);
    // "starts now" is left to the AVAILABLE toast
    if (left < 30_000 || left > options.leadMinutes * 60_000 || this.reminded.has(key)) {
      return null;
    }
    this.reminded.add(key);
    return {
      kind: 'soon',
      key,
      type: 'info',
      message: `${title(s)} will be available soon: ${relative(start, now)} (${localTime(
        start,
        options.timeZone
      )}), for ${humanDuration(s.duration_s)}`
    };
  }

  private _change(
    s: ISession,
    before: string | undefined,
    announce: boolean,
    options: INotifyOptions
  ): IToast | null {
    if (!announce) {
      return null;
    }
    const link = s.connectors.find(c => c.link)?.location;
    if (s.phase === 'AVAILABLE' || (s.phase === 'RUNNING' && link && before !== 'AVAILABLE')) {
      if (!options.available) {
        return null;
      }
      return {
        kind: 'available',
        key: `available:${s.key}`,
        type: 'success',
        message: `${title(s)} is AVAILABLE${link ? '' : ' (no link given)'}`,
        link
      };
    }
    if (s.phase === 'COMPLETED' && options.finished) {
      return {
        kind: 'completed',
        key: `completed:${s.key}`,
        type: 'success',
        message: `${title(s)} COMPLETED`,
        labPath: outputNotebook(s)
      };
    }
    if (s.phase === 'FAILED' && options.finished) {
      return {
        kind: 'failed',
        key: `failed:${s.key}`,
        type: 'error',
        message: `${title(s)} FAILED: ${s.error || 'no reason given'}`,
        labPath: outputNotebook(s)
      };
    }
    return null;
  }

  private _final(phase: string): boolean {
    return ['COMPLETED', 'FAILED', 'CANCELLED', 'REJECTED', 'EXPIRED'].includes(phase);
  }

  private _loadedAt: number;
  private _phases = new Map<string, string>();
  private _batches = new Map<string, boolean>();
  private _shown = new Set<string>();
}
