/**
 * The "Run this notebook…" dialog: the resources and when, in the SDK's words.
 *
 * "When" takes any phrase the SDK reads ("now", "within 10 min", "this afternoon",
 * "Mon-Fri 09:00-12:00", see docs/time-and-phrases.md), read in the browser's time zone; the
 * server parses it, so a phrase it cannot read comes back as the SDK's own error message.
 */

import { Widget } from '@lumino/widgets';

import { h } from './dom';
import { IRunForm, ISettings } from './types';

export type RunFields = Omit<IRunForm, 'path' | 'tz'>;

let lists = 0;

function field(label: string, input: HTMLElement, hint = ''): HTMLElement {
  return h(
    'label',
    { class: 'eb-field' },
    h('span', { class: 'eb-field-label' }, label),
    input,
    hint ? h('span', { class: 'eb-field-hint' }, hint) : null
  );
}

function suggestions(id: string, values: string[]): HTMLElement {
  return h('datalist', { id }, values.map(v => h('option', { value: v })));
}

export class RunDialogBody extends Widget {
  constructor(path: string, settings: ISettings) {
    super();
    this.addClass('eb-run-dialog');
    const n = ++lists;
    this._cores = h('input', { type: 'number', min: 1, step: 1, value: settings.cores, name: 'cores' }) as HTMLInputElement;
    this._memory = h('input', { type: 'number', min: 1, step: 1, value: settings.memory, name: 'memory' }) as HTMLInputElement;
    this._gpus = h('input', { type: 'number', min: 0, step: 1, value: 0, name: 'gpus' }) as HTMLInputElement;
    this._duration = h('input', { type: 'text', value: settings.duration, name: 'duration', list: `eb-durations-${n}` }) as HTMLInputElement;
    this._when = h('input', { type: 'text', value: settings.when, name: 'when', list: `eb-whens-${n}` }) as HTMLInputElement;
    this.node.append(
      h('p', { class: 'eb-muted' }, `Ask every broker when and where ${path} can run (its saved version).`),
      field('cores', this._cores),
      field('memory GiB', this._memory),
      field('GPUs', this._gpus),
      field('duration', this._duration, '10 min, 2 h, 1h30m, PT2H'),
      field('when', this._when, 'now, within 10 min, this afternoon, tomorrow 09:00, Mon-Fri 09:00-12:00'),
      suggestions(`eb-durations-${n}`, settings.durationSuggestions),
      suggestions(`eb-whens-${n}`, settings.whenSuggestions)
    );
  }

  getValue(): RunFields {
    return {
      cores: Number(this._cores.value),
      memory: Number(this._memory.value),
      gpus: Number(this._gpus.value || 0),
      duration: this._duration.value.trim(),
      start: this._when.value.trim()
    };
  }

  protected onAfterAttach(): void {
    this._when.focus();
    this._when.select();
  }

  private _cores: HTMLInputElement;
  private _memory: HTMLInputElement;
  private _gpus: HTMLInputElement;
  private _duration: HTMLInputElement;
  private _when: HTMLInputElement;
}
