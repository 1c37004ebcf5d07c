/**
 * The sidebar's state: brokers, sessions, batches and the offers on show, kept fresh by a
 * BackoffPoller, and the notifications their changes deserve.
 */

import { ISignal, Signal } from '@lumino/signaling';

import { EBApiError, postAPI, requestAPI } from './api';
import { INotifyOptions, IToast, NotificationPlanner } from './notify';
import { BackoffPoller, PollMode } from './poller';
import { relative, parseTime } from './format';
import {
  DEFAULT_SETTINGS,
  IBatch,
  IFailedRun,
  IBroker,
  IOffer,
  IOfferSet,
  IRunForm,
  ISession,
  ISettings
} from './types';

const REMINDED_KEY = 'jupyter-execution-broker:reminded';

function message(error: unknown): string {
  return error instanceof EBApiError ? error.message : String(error);
}

/** What of the brokers' health is news (not their latency, which changes every time). */
function brokersShape(brokers: IBroker[]): string {
  return JSON.stringify(brokers.map(b => [b.name, b.ok, b.error, b.platform, b.version]));
}

export class EBModel {
  constructor(settings: ISettings = DEFAULT_SETTINGS) {
    this.settings = settings;
    this._planner = new NotificationPlanner(Date.now(), loadReminded());
    this._poller = new BackoffPoller({
      tick: () => this._tick(),
      mode: () => this.mode(),
      min: settings.refreshMinSeconds * 1000,
      max: settings.refreshMaxSeconds * 1000,
      watch: settings.watchSeconds * 1000
    });
    document.addEventListener('visibilitychange', this._onVisibility);
  }

  settings: ISettings;
  brokers: IBroker[] = [];
  brokersProblem = '';
  sessions: ISession[] = [];
  sessionsProblem = '';
  warnings: string[] = [];
  batches: IBatch[] = [];
  batchesAvailable = false;
  offers: IOfferSet | null = null;
  /** What the offers section is doing ("asking the brokers…"), or ''. */
  offersStatus = '';
  offersError = '';
  /** The last refresh's error (the server or every broker failed), or ''. */
  error = '';
  loaded = false;
  /** Offers being decided and sessions being cancelled (their buttons are disabled). */
  busy = new Set<string>();

  /** Something shown changed. */
  get changed(): ISignal<this, void> {
    return this._changed;
  }

  /** A notification to show. */
  get toasts(): ISignal<this, IToast> {
    return this._toasts;
  }

  get poller(): BackoffPoller {
    return this._poller;
  }

  start(): void {
    void this._poller.refresh();
  }

  dispose(): void {
    this._poller.dispose();
    this._clearReminderTimer();
    document.removeEventListener('visibilitychange', this._onVisibility);
  }

  configure(settings: ISettings): void {
    this.settings = settings;
    this._poller.configure(
      settings.refreshMinSeconds * 1000,
      settings.refreshMaxSeconds * 1000,
      settings.watchSeconds * 1000
    );
    this._scheduleReminder();
    this._changed.emit();
  }

  /** The sidebar was shown or hidden. */
  setVisible(visible: boolean): void {
    this._visible = visible;
    this._poller.wake();
  }

  /**
   * Poll with backoff while the sidebar is shown; while hidden, watch slowly only when
   * something is in flight that a notification could be about; else pause.
   */
  mode(): PollMode {
    if (this._visible && !document.hidden) {
      return 'active';
    }
    return this._watching() ? 'watch' : 'paused';
  }

  refresh(): Promise<void> {
    return this._poller.refresh();
  }

  // -- sessions ------------------------------------------------------------------------------

  async cancel(session: ISession): Promise<void> {
    await this._act(session.key, async () => {
      const path = `sessions/${encodeURIComponent(session.broker)}/${session.uuid}/cancel`;
      await postAPI(path, {});
    });
  }

  // -- offers --------------------------------------------------------------------------------

  async ask(form: IRunForm): Promise<void> {
    this._rejectOpenOffers();
    this.offers = null;
    this.offersError = '';
    this.offersStatus = `asking the brokers for ${form.path}…`;
    this._changed.emit();
    try {
      this.offers = await postAPI<IOfferSet>('offers', form);
    } catch (error) {
      this.offersError = message(error);
    } finally {
      this.offersStatus = '';
      this._changed.emit();
    }
  }

  async accept(offer: IOffer): Promise<void> {
    const set = this.offers;
    if (!set) {
      return;
    }
    await this._act(`offer:${set.id}`, async () => {
      const answer = await postAPI<{ session: ISession; offers: IOfferSet | null }>(
        `offers/${set.id}/${offer.uuid}/accept`,
        { broker: offer.broker }
      );
      this._planner.track(answer.session);
      if (answer.offers && this.offers?.id === set.id) {
        this.offers = answer.offers;
      }
      const s = answer.session;
      this._toasts.emit({
        kind: 'available',
        key: `accepted:${s.key}`,
        type: 'success',
        message: `Accepted: ${s.name || s.uuid.slice(0, 8)} on ${s.broker}, ${relative(
          parseTime(s.start),
          Date.now()
        )}`
      });
    });
  }

  async reject(offer: IOffer): Promise<void> {
    const set = this.offers;
    if (!set) {
      return;
    }
    await this._act(`offer:${set.id}`, async () => {
      const answer = await postAPI<{ offer: IOffer }>(`offers/${set.id}/${offer.uuid}/reject`, {
        broker: offer.broker
      });
      this._replaceOffer(set, answer.offer);
    });
  }

  /** Close the offers section; the offers still open are rejected (they hold capacity). */
  dismissOffers(): void {
    this._rejectOpenOffers();
    this.offers = null;
    this.offersError = '';
    this._changed.emit();
  }

  // -- batches -------------------------------------------------------------------------------

  async reopen(batch: IBatch, run: IFailedRun): Promise<void> {
    const input = run.input;
    await this._act(`reopen:${batch.id}:${run.run}`, async () => {
      const answer = await postAPI<{ session: ISession }>(
        `batches/${encodeURIComponent(batch.id)}/reopen`,
        { run: run.run, input }
      );
      this._planner.track(answer.session);
      this._toasts.emit({
        kind: 'available',
        key: `reopened:${answer.session.key}`,
        type: 'info',
        message: `Re-opening ${input} interactively on ${answer.session.broker}`
      });
    });
  }

  // -- internals -----------------------------------------------------------------------------

  /** Run a click's work with its button disabled; errors become an error toast. */
  private async _act(key: string, work: () => Promise<void>): Promise<void> {
    this.busy.add(key);
    this._changed.emit();
    try {
      await work();
    } catch (error) {
      this._toasts.emit({ kind: 'failed', key: `error:${Date.now()}`, type: 'error', message: message(error) });
    } finally {
      this.busy.delete(key);
      this._changed.emit();
    }
    await this.refresh();
  }

  private _replaceOffer(set: IOfferSet, offer: IOffer): void {
    set.offers = set.offers.map(o => (o.uuid === offer.uuid ? offer : o));
  }

  private _rejectOpenOffers(): void {
    const set = this.offers;
    if (!set) {
      return;
    }
    for (const offer of set.offers) {
      if (offer.phase === 'OFFERED' && (parseTime(offer.expires) ?? Infinity) > Date.now()) {
        void postAPI(`offers/${set.id}/${offer.uuid}/reject`, { broker: offer.broker }).catch(
          () => undefined
        );
      }
    }
  }

  private _watching(): boolean {
    const s = this.settings;
    const notifying = s.notifyAvailable || s.notifyFinished || s.notifyBatches || s.leadMinutes > 0;
    if (!notifying) {
      return false;
    }
    if (!this.loaded) {
      return true;
    }
    return this.sessions.some(x => !x.final) || this.batches.some(b => !b.done);
  }

  private _notifyOptions(): INotifyOptions {
    const s = this.settings;
    return {
      leadMinutes: s.leadMinutes,
      available: s.notifyAvailable,
      finished: s.notifyFinished,
      batches: s.notifyBatches
    };
  }

  /** One poll: sessions and batches always, the brokers' health while the sidebar shows. */
  private async _tick(): Promise<boolean> {
    const before = this._shape();
    const active = this.mode() === 'active' || !this.loaded;
    const hours = this.settings.finishedHours;
    const [sessions, batches, brokers] = await Promise.allSettled([
      requestAPI<{ sessions: ISession[]; warnings: string[]; problem: string }>(
        `sessions?finished_hours=${hours}`
      ),
      requestAPI<{ available: boolean; batches: IBatch[] }>('batches'),
      active
        ? requestAPI<{ brokers: IBroker[]; problem: string }>('brokers')
        : Promise.resolve(null)
    ]);
    const errors: string[] = [];
    if (sessions.status === 'fulfilled') {
      this.sessions = sessions.value.sessions;
      this.warnings = sessions.value.warnings;
      this.sessionsProblem = sessions.value.problem;
    } else {
      errors.push(message(sessions.reason));
    }
    if (batches.status === 'fulfilled') {
      this.batches = batches.value.batches;
      this.batchesAvailable = batches.value.available;
    } else {
      errors.push(message(batches.reason));
    }
    if (brokers.status === 'fulfilled' && brokers.value) {
      this.brokers = brokers.value.brokers;
      this.brokersProblem = brokers.value.problem;
    } else if (brokers.status === 'rejected') {
      errors.push(message(brokers.reason));
    }
    this.error = errors.join('; ');
    this.loaded = true;
    const now = Date.now();
    const options = this._notifyOptions();
    const toasts = [
      ...(sessions.status === 'fulfilled' ? this._planner.sessions(this.sessions, now, options) : []),
      ...(batches.status === 'fulfilled' ? this._planner.batches(this.batches, options) : [])
    ];
    saveReminded(this._planner.reminded);
    for (const toast of toasts) {
      this._toasts.emit(toast);
    }
    this._scheduleReminder();
    const shown = this._shown();
    if (shown !== this._lastShown) {
      this._lastShown = shown;
      this._changed.emit();
    }
    if (errors.length) {
      throw new Error(this.error);
    }
    return this._shape() !== before;
  }

  private _shape(): string {
    const sessions = this.sessions.map(s => [s.key, s.phase, s.start, s.modified]);
    const batches = this.batches.map(b => [b.id, b.counts, b.done]);
    return JSON.stringify([sessions, batches, brokersShape(this.brokers), this.offers?.id]);
  }

  /** What the sidebar draws (but the brokers' latency): redrawn only when it changes. */
  private _shown(): string {
    return JSON.stringify([
      this._shape(),
      this.sessions,
      this.batches,
      this.warnings,
      this.sessionsProblem,
      this.brokersProblem,
      this.batchesAvailable,
      this.error
    ]);
  }

  /** A timer for the next "available soon" reminder, so it comes on time between polls. */
  private _scheduleReminder(): void {
    this._clearReminderTimer();
    const due = this._planner.nextReminder(this.sessions, Date.now(), this._notifyOptions());
    if (due === null) {
      return;
    }
    this._reminderTimer = setTimeout(() => {
      this._reminderTimer = null;
      const toasts = this._planner.sessions(this.sessions, Date.now(), this._notifyOptions());
      saveReminded(this._planner.reminded);
      toasts.forEach(t => this._toasts.emit(t));
      this._scheduleReminder();
    }, due + 1000);
  }

  private _clearReminderTimer(): void {
    if (this._reminderTimer !== null) {
      clearTimeout(this._reminderTimer);
      this._reminderTimer = null;
    }
  }

  private _onVisibility = (): void => {
    this._poller.wake();
  };

  private _planner: NotificationPlanner;
  private _poller: BackoffPoller;
  private _visible = false;
  private _lastShown = '';
  private _reminderTimer: ReturnType<typeof setTimeout> | null = null;
  private _changed = new Signal<this, void>(this);
  private _toasts = new Signal<this, IToast>(this);
}

/** Reminders already shown, kept across reloads (the newest 200). */
function loadReminded(): Set<string> {
  try {
    const raw = window.localStorage.getItem(REMINDED_KEY);
    return new Set(raw ? (JSON.parse(raw) as string[]) : []);
  } catch {
    return new Set();
  }
}

function saveReminded(keys: Set<string>): void {
  try {
    window.localStorage.setItem(REMINDED_KEY, JSON.stringify([...keys].slice(-200)));
  } catch {
    // private browsing or a full storage: reminders may repeat after a reload
  }
}
