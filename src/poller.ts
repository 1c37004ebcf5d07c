/**
 * Refreshing by polling that backs off, and pauses while nobody looks.
 *
 * After a poll that changed something the next one comes after `min` ms; every poll that
 * changed nothing (or failed) multiplies the pause by `factor`, up to `max`. What the
 * sidebar is doing decides the mode (see `PollMode`): while it is shown the poller runs
 * with backoff; while it is hidden it only watches (every `watch` ms, for the
 * notifications) when something is in flight, and is paused otherwise. `refresh()` polls at
 * once and starts the backoff again: the sidebar calls it after every click and when it is
 * shown again. This is how dask-labextension refreshes its cluster list.
 */

/** `active`: the sidebar is shown; `watch`: hidden, but something is in flight; `paused`. */
export type PollMode = 'active' | 'watch' | 'paused';

/** The timer functions (tests pass fake ones). */
export interface ITimers {
  set(fn: () => void, ms: number): unknown;
  clear(handle: unknown): void;
}

export interface IPollerOptions {
  /** One poll; resolves to whether anything changed. A rejection counts as no change. */
  tick: () => Promise<boolean>;
  /** The current mode, asked whenever the next poll is scheduled. */
  mode: () => PollMode;
  min: number;
  max: number;
  /** The pause while watching (sidebar hidden). */
  watch: number;
  factor?: number;
  timers?: ITimers;
}

const REAL_TIMERS: ITimers = {
  set: (fn, ms) => setTimeout(fn, ms),
  clear: handle => clearTimeout(handle as ReturnType<typeof setTimeout>)
};

export class BackoffPoller {
  constructor(options: IPollerOptions) {
    this._options = options;
    this._timers = options.timers ?? REAL_TIMERS;
    this._delay = options.min;
  }

  /** The pause before the next poll while active (ms). */
  get delay(): number {
    return this._delay;
  }

  /** Whether a poll is waiting on its timer. */
  get scheduled(): boolean {
    return this._handle !== null;
  }

  /** Change the bounds (from the settings); takes effect from the next poll. */
  configure(min: number, max: number, watch: number): void {
    this._options = { ...this._options, min, max: Math.max(min, max), watch };
    this._delay = Math.min(Math.max(this._delay, min), Math.max(min, max));
  }

  /** Poll now and start the backoff again; resolves when the poll is done. */
  refresh(): Promise<void> {
    if (this._disposed) {
      return Promise.resolve();
    }
    this._delay = this._options.min;
    this._cancel();
    if (this._running) {
      this._again = true;
      return this._running;
    }
    this._running = this._poll();
    return this._running;
  }

  /**
   * The mode may have changed (the sidebar was shown or hidden): schedule accordingly.
   * Becoming active polls at once (the list may be old).
   */
  wake(): void {
    if (this._disposed || this._running) {
      return;
    }
    const mode = this._options.mode();
    if (mode === 'active' && this._lastMode !== 'active') {
      void this.refresh();
      return;
    }
    this._schedule();
  }

  dispose(): void {
    this._disposed = true;
    this._cancel();
  }

  private async _poll(): Promise<void> {
    let changed = false;
    try {
      changed = await this._options.tick();
    } catch {
      changed = false;
    }
    const { min, max, factor = 2 } = this._options;
    this._delay = changed ? min : Math.min(this._delay * factor, max);
    this._running = null;
    if (this._again) {
      this._again = false;
      this._delay = min;
      this._running = this._poll();
      return this._running;
    }
    this._schedule();
  }

  private _schedule(): void {
    this._cancel();
    if (this._disposed) {
      return;
    }
    const mode = this._options.mode();
    this._lastMode = mode;
    if (mode === 'paused') {
      return;
    }
    const pause =
      mode === 'active' ? this._delay : Math.max(this._delay, this._options.watch);
    this._handle = this._timers.set(() => {
      this._handle = null;
      this._running = this._poll();
    }, pause);
  }

  private _cancel(): void {
    if (this._handle !== null) {
      this._timers.clear(this._handle);
      this._handle = null;
    }
  }

  private _options: IPollerOptions;
  private _timers: ITimers;
  private _delay: number;
  private _handle: unknown = null;
  private _running: Promise<void> | null = null;
  private _again = false;
  private _disposed = false;
  private _lastMode: PollMode | null = null;
}
