/**
 * What the server's /eb/ handlers send (eb_labextension/views.py and batches.py).
 */

export interface IBroker {
  name: string;
  url: string;
  source: string;
  ok: boolean;
  platform: string;
  version: string;
  latency_ms: number | null;
  error: string;
}

export interface IConnector {
  kind: string;
  location: string;
  link: boolean;
}

export interface IOutput {
  name: string;
  path: string;
  /** Relative to the server's root when JupyterLab can open it, else null. */
  lab_path: string | null;
}

export interface ISession {
  key: string;
  broker: string;
  uuid: string;
  name: string;
  phase: string;
  final: boolean;
  platform: string;
  start: string | null;
  end: string | null;
  duration_s: number | null;
  duration: string;
  resources: string;
  connectors: IConnector[];
  outputs: IOutput[];
  messages: Array<{ level: string; text: string }>;
  error: string;
  notebook: string | null;
  lab_path: string | null;
  created: string | null;
  modified: string | null;
}

export interface IOffer {
  uuid: string;
  broker: string;
  platform: string;
  phase: string;
  start: string | null;
  duration_s: number | null;
  duration: string;
  resources: string;
  cost: number | null;
  expires: string | null;
}

export interface IOfferSet {
  id: string;
  what: string;
  offers: IOffer[];
  warnings: string[];
  reasons: string[];
}

export interface IFailedRun {
  /** The run's id in its batch (names its output; what a re-open asks for). */
  run: string;
  input: string;
  error: string;
  cell: number | null;
  output: string | null;
  lab_path: string | null;
}

export interface IBatch {
  id: string;
  name: string;
  notebook: string | null;
  total: number;
  counts: Record<string, number>;
  done: boolean;
  finished: string | null;
  /** Why the batch stopped placing runs (nobody can run it), or null. */
  error: string | null;
  failed: IFailedRun[];
}

/** The "Run this notebook…" dialog's answer (POST /eb/offers). */
export interface IRunForm {
  path: string;
  cores: number;
  memory: number;
  gpus: number;
  duration: string;
  start: string;
  tz: string;
}

/** The user's settings (schema/plugin.json). */
export interface ISettings {
  leadMinutes: number;
  notifyAvailable: boolean;
  notifyFinished: boolean;
  notifyBatches: boolean;
  refreshMinSeconds: number;
  refreshMaxSeconds: number;
  watchSeconds: number;
  finishedHours: number;
  cores: number;
  memory: number;
  duration: string;
  when: string;
  whenSuggestions: string[];
  durationSuggestions: string[];
}

export const DEFAULT_SETTINGS: ISettings = {
  leadMinutes: 10,
  notifyAvailable: true,
  notifyFinished: true,
  notifyBatches: true,
  refreshMinSeconds: 2,
  refreshMaxSeconds: 30,
  watchSeconds: 60,
  finishedHours: 24,
  cores: 1,
  memory: 2,
  duration: '30 min',
  when: 'now',
  whenSuggestions: [
    'now',
    'within 10 min',
    'within 1 h',
    'in 2 hours',
    'this afternoon',
    'tomorrow 09:00',
    'Mon-Fri 09:00-12:00'
  ],
  durationSuggestions: ['10 min', '30 min', '1 h', '2 h', '4 h', '8 h', '1 d']
};

/** Phases before a session becomes available (it is booked, waiting or being prepared). */
export const BOOKED_PHASES = ['ACCEPTED', 'WAITING', 'PREPARING'];
