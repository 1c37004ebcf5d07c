/**
 * The sidebar: brokers and their health, the offers on show, my sessions, my batches.
 *
 * It draws the model and nothing else; every click goes to the model (which talks to the
 * server) or to a JupyterLab command. While shown, a one-second ticker moves the countdowns
 * ("starts in 1 h 20 min", "expires in 4:59") locally, without asking the server.
 */

import { Widget } from '@lumino/widgets';

import { Child, button, h } from './dom';
import { countdown, localTime, parseTime, relative, sessionTiming } from './format';
import { EBModel } from './model';
import { countsText } from './notify';
import { IBatch, IOffer, ISession } from './types';

/** Where each phase puts the progress bar (of 1) and its colour: the panel's steps. */
const STEPS: Record<string, [number, string]> = {
  ACCEPTED: [0.1, 'info'],
  WAITING: [0.2, 'info'],
  PREPARING: [0.4, 'info'],
  AVAILABLE: [0.6, 'info'],
  RUNNING: [0.7, 'info'],
  RELEASING: [0.9, 'info'],
  COMPLETED: [1, 'success'],
  FAILED: [1, 'danger'],
  CANCELLED: [1, 'warning'],
  REJECTED: [1, 'warning'],
  EXPIRED: [1, 'warning']
};

export interface ISidebarActions {
  /** "Run this notebook…" (the command). */
  runNotebook(): void;
  /** Whether a notebook is open to run. */
  canRunNotebook(): boolean;
  /** Open a file of the server's root in JupyterLab, at a cell when given. */
  open(labPath: string, cell?: number): void;
}

export class EBSidebar extends Widget {
  constructor(model: EBModel, actions: ISidebarActions) {
    super();
    this.model = model;
    this._actions = actions;
    this.addClass('eb-sidebar');
    this.id = 'eb-sidebar';
    this.title.caption = 'Execution Broker';
    model.changed.connect(this._render, this);
    this.node.addEventListener('click', this._onClick);
    this._render();
  }

  readonly model: EBModel;

  dispose(): void {
    this._stopTicker();
    super.dispose();
  }

  /** Draw again (a notebook was opened or closed: the run button follows). */
  update(): void {
    this._render();
  }

  protected onAfterShow(): void {
    this.model.setVisible(true);
    this._startTicker();
  }

  protected onAfterHide(): void {
    this.model.setVisible(false);
    this._stopTicker();
  }

  /** Links to files of the server open in JupyterLab. */
  private _onClick = (event: MouseEvent): void => {
    const link = (event.target as HTMLElement).closest<HTMLElement>('[data-lab-path]');
    if (link?.dataset.labPath) {
      event.preventDefault();
      this._actions.open(link.dataset.labPath);
    }
  };

  private _startTicker(): void {
    if (this._ticker === null) {
      this._ticker = window.setInterval(() => this._tick(), 1000);
    }
  }

  private _stopTicker(): void {
    if (this._ticker !== null) {
      window.clearInterval(this._ticker);
      this._ticker = null;
    }
  }

  /** Move the countdowns (elements marked with their kind and time). */
  private _tick(): void {
    const now = Date.now();
    this.node.querySelectorAll<HTMLElement>('[data-eb-countdown]').forEach(el => {
      const at = Number(el.dataset.ebAt);
      const kind = el.dataset.ebCountdown;
      if (kind === 'expires') {
        el.textContent = countdown(at, now);
      } else if (kind === 'starts') {
        el.textContent = relative(at, now);
      } else if (kind === 'timing') {
        const duration = el.dataset.ebDuration ? Number(el.dataset.ebDuration) : null;
        el.textContent = sessionTiming(at || null, duration, false, now);
      }
    });
  }

  private _render(): void {
    const m = this.model;
    const header = h(
      'div',
      { class: 'eb-header' },
      h('h2', {}, 'Execution Broker'),
      h(
        'div',
        { class: 'eb-header-buttons' },
        button('Run this notebook…', 'eb-run', () => this._actions.runNotebook(), {
          accent: true,
          disabled: !this._actions.canRunNotebook(),
          title: 'Ask every broker when and where the current notebook can run'
        }),
        button('Refresh', 'eb-refresh', () => void m.refresh(), {
          title: 'Ask the brokers again now'
        })
      )
    );
    const error = m.error ? h('div', { class: 'eb-error' }, `⚠ ${m.error}`) : null;
    this.node.replaceChildren(
      header,
      ...[error, this._brokers(), this._offers(), this._sessions(), this._batches()].filter(
        (x): x is HTMLElement => x !== null
      )
    );
  }

  private _section(title: string, className: string, ...body: Array<Child | Child[]>): HTMLElement {
    return h('section', { class: `eb-section ${className}` }, h('h3', {}, title), ...body);
  }

  // -- brokers -------------------------------------------------------------------------------

  private _brokers(): HTMLElement {
    const m = this.model;
    if (m.brokersProblem) {
      return this._section('Brokers', 'eb-brokers', h('div', { class: 'eb-problem' }, m.brokersProblem));
    }
    if (!m.loaded) {
      return this._section('Brokers', 'eb-brokers', h('div', { class: 'eb-muted' }, 'asking…'));
    }
    const rows = m.brokers.map(b =>
      h(
        'li',
        { class: `eb-broker ${b.ok ? 'eb-ok' : 'eb-down'}`, title: `${b.url} (${b.source})` },
        h('span', { class: 'eb-dot' }, b.ok ? '●' : '○'),
        h('b', {}, b.name),
        b.ok
          ? h(
              'span',
              { class: 'eb-muted' },
              ` ${b.platform}${b.version ? ' ' + b.version : ''}${
                b.latency_ms !== null ? `, ${b.latency_ms} ms` : ''
              }`
            )
          : h('span', { class: 'eb-down-text' }, ` unavailable: ${b.error}`)
      )
    );
    return this._section('Brokers', 'eb-brokers', h('ul', { class: 'eb-list' }, rows));
  }

  // -- offers --------------------------------------------------------------------------------

  private _offers(): HTMLElement | null {
    const m = this.model;
    if (!m.offers && !m.offersStatus && !m.offersError) {
      return null;
    }
    const body: Child[] = [];
    if (m.offersStatus) {
      body.push(h('div', { class: 'eb-muted eb-offers-status' }, m.offersStatus));
    }
    if (m.offersError) {
      body.push(h('div', { class: 'eb-error eb-offers-error' }, `⚠ ${m.offersError}`));
    }
    const set = m.offers;
    if (set) {
      body.push(h('div', { class: 'eb-what' }, set.what));
      if (set.warnings.length) {
        body.push(
          h(
            'div',
            { class: 'eb-warning' },
            `⚠ ${set.warnings.length} broker(s) did not answer: ${set.warnings.join('; ')}`
          )
        );
      }
      const busy = m.busy.has(`offer:${set.id}`);
      body.push(h('ul', { class: 'eb-list' }, set.offers.map(o => this._offer(o, busy))));
      if (!set.offers.length || set.reasons.length) {
        const said = set.reasons.length ? set.reasons : ['no broker made an offer'];
        body.push(
          h(
            'div',
            { class: 'eb-reasons' },
            h('b', {}, set.offers.length ? 'The brokers also said:' : 'No offers.'),
            h('ul', {}, said.map(r => h('li', {}, r)))
          )
        );
      }
    }
    body.push(button('Close', 'eb-close-offers', () => m.dismissOffers(), {
      title: 'Close, rejecting the offers not accepted'
    }));
    return this._section('Offers', 'eb-offers', body);
  }

  private _offer(o: IOffer, busy: boolean): HTMLElement {
    const now = Date.now();
    const start = parseTime(o.start);
    const expires = parseTime(o.expires);
    const open = o.phase === 'OFFERED' && (expires === null || expires > now);
    return h(
      'li',
      { class: 'eb-offer', 'data-uuid': o.uuid },
      h(
        'div',
        {},
        h('b', { class: 'eb-offer-broker' }, o.broker),
        o.platform ? ` (${o.platform})` : '',
        ' — ',
        h('span', { class: 'eb-when', 'data-eb-countdown': 'starts', 'data-eb-at': start ?? '' }, relative(start, now)),
        h('span', { class: 'eb-muted' }, ` (${localTime(start)})`)
      ),
      h(
        'div',
        { class: 'eb-muted' },
        `${o.duration}, ${o.resources}${o.cost !== null ? `, cost ${o.cost}` : ''}`
      ),
      h(
        'div',
        { class: 'eb-offer-actions' },
        o.phase === 'OFFERED'
          ? h(
              'span',
              { class: 'eb-expires', 'data-eb-countdown': 'expires', 'data-eb-at': expires ?? '' },
              countdown(expires, now)
            )
          : h('b', { class: 'eb-expires' }, o.phase.toLowerCase()),
        button('Accept', 'eb-accept', () => void this.model.accept(o), {
          accent: true,
          disabled: !open || busy
        }),
        button('Reject', 'eb-reject', () => void this.model.reject(o), { disabled: !open || busy })
      )
    );
  }

  // -- sessions ------------------------------------------------------------------------------

  private _sessions(): HTMLElement {
    const m = this.model;
    const body: Child[] = [];
    if (m.sessionsProblem) {
      body.push(h('div', { class: 'eb-problem' }, m.sessionsProblem));
    }
    if (m.warnings.length) {
      body.push(h('div', { class: 'eb-warning' }, `⚠ ${m.warnings.join('; ')}`));
    }
    if (m.loaded && !m.sessions.length && !m.sessionsProblem) {
      body.push(h('div', { class: 'eb-muted' }, 'No sessions.'));
    }
    body.push(h('ul', { class: 'eb-list' }, m.sessions.map(s => this._session(s))));
    return this._section('My sessions', 'eb-sessions', body);
  }

  private _session(s: ISession): HTMLElement {
    const now = Date.now();
    const start = parseTime(s.start);
    const [value, tone] = STEPS[s.phase] ?? [0, 'info'];
    const links = s.connectors.filter(c => c.link);
    const live = s.phase === 'AVAILABLE' || s.phase === 'RUNNING';
    const busy = this.model.busy.has(s.key);
    return h(
      'li',
      { class: `eb-session eb-phase-${s.phase.toLowerCase()}`, 'data-key': s.key },
      h(
        'div',
        { class: 'eb-session-title' },
        h('b', {}, s.name || 'session'),
        ' ',
        h('code', {}, s.uuid.slice(0, 8)),
        ' on ',
        h('b', {}, s.broker),
        s.platform ? ` (${s.platform})` : ''
      ),
      h(
        'div',
        { class: 'eb-session-state' },
        h('span', { class: `eb-phase eb-tone-${tone}` }, s.phase),
        h('progress', { class: `eb-progress eb-tone-${tone}`, max: 1, value })
      ),
      h(
        'div',
        {
          class: 'eb-muted eb-timing',
          'data-eb-countdown': s.final ? undefined : 'timing',
          'data-eb-at': start ?? '',
          'data-eb-duration': s.duration_s ?? undefined
        },
        sessionTiming(start, s.duration_s, s.final, now)
      ),
      h('div', { class: 'eb-muted' }, s.resources),
      live && links.length
        ? h(
            'div',
            { class: 'eb-connectors' },
            links.map(c =>
              h(
                'a',
                { class: 'eb-connector', href: c.location, target: '_blank', rel: 'noopener', title: c.location },
                /^(https?)?$/i.test(c.kind) ? 'Open' : `Open ${c.kind}`
              )
            )
          )
        : null,
      s.error ? h('div', { class: 'eb-error eb-session-error' }, s.error) : null,
      s.outputs.length
        ? h(
            'div',
            { class: 'eb-outputs' },
            s.outputs.map(o =>
              o.lab_path
                ? h('a', { class: 'eb-output', href: '#', title: o.path, 'data-lab-path': o.lab_path }, `output ${o.name}`)
                : h('span', { class: 'eb-muted', title: o.path }, `output ${o.name}: ${o.path}`)
            )
          )
        : null,
      s.messages.length && !s.final
        ? h('ul', { class: 'eb-messages' }, s.messages.map(x => h('li', {}, `${x.level}: ${x.text}`)))
        : null,
      s.final
        ? null
        : button('Cancel', 'eb-cancel', () => void this.model.cancel(s), {
            disabled: busy,
            title: 'Cancel: free the booking, or stop the run'
          })
    );
  }

  // -- batches -------------------------------------------------------------------------------

  private _batches(): HTMLElement | null {
    const m = this.model;
    if (!m.batchesAvailable) {
      return null;
    }
    const body: Child[] = [];
    if (!m.batches.length) {
      body.push(h('div', { class: 'eb-muted' }, 'No batches.'));
    }
    body.push(h('ul', { class: 'eb-list' }, m.batches.map(b => this._batch(b))));
    return this._section('My batches', 'eb-batches', body);
  }

  private _batch(b: IBatch): HTMLElement {
    const finished = Object.entries(b.counts)
      .filter(([phase]) => ['COMPLETED', 'FAILED', 'CANCELLED'].includes(phase))
      .reduce((n, [, count]) => n + count, 0);
    return h(
      'li',
      { class: 'eb-batch', 'data-id': b.id },
      h('div', {}, h('b', {}, b.name || b.id), ' ', h('span', { class: 'eb-muted' }, `${finished}/${b.total}`)),
      h('progress', { class: `eb-progress ${b.counts['FAILED'] ? 'eb-tone-danger' : 'eb-tone-info'}`, max: b.total || 1, value: finished }),
      h(
        'div',
        { class: 'eb-counts' },
        Object.entries(b.counts)
          .filter(([, n]) => n)
          .map(([phase, n]) => h('span', { class: `eb-count eb-count-${phase.toLowerCase()}` }, `${n} ${phase}`))
      ),
      b.error ? h('div', { class: 'eb-error' }, b.error) : null,
      b.failed.length
        ? this._details(
            b.id,
            h('summary', {}, `${b.failed.length} failed run${b.failed.length === 1 ? '' : 's'}`),
            h(
              'ul',
              {},
              b.failed.map(run =>
                h(
                  'li',
                  { class: 'eb-failed-run' },
                  h('code', {}, run.input),
                  run.error ? h('div', { class: 'eb-error' }, run.error) : null,
                  run.lab_path
                    ? button(run.cell !== null ? `Open at cell ${run.cell}` : 'Open output', 'eb-open-failed', () =>
                        this._actions.open(run.lab_path!, run.cell ?? undefined)
                      )
                    : null,
                  button('Re-open interactively', 'eb-reopen', () => void this.model.reopen(b, run), {
                    disabled: this.model.busy.has(`reopen:${b.id}:${run.run}`),
                    title: 'Book a Jupyter server now with this notebook, its parameters and this input'
                  })
                )
              )
            )
          )
        : null,
      b.done ? h('div', { class: 'eb-muted' }, `finished: ${countsText(b.counts)}`) : null
    );
  }

  /** A <details> that stays open across redraws while the user keeps it open. */
  private _details(id: string, ...children: Child[]): HTMLElement {
    const el = h('details', { class: 'eb-failed', open: this._open.has(id) }, ...children);
    el.addEventListener('toggle', () => {
      if ((el as HTMLDetailsElement).open) {
        this._open.add(id);
      } else {
        this._open.delete(id);
      }
    });
    return el;
  }

  private _actions: ISidebarActions;
  private _ticker: number | null = null;
  private _open = new Set<string>();
}
