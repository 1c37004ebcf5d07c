/**
 * Times as people say them, with exactly the SDK's phrases (eb_sdk/_format.py and the
 * panel's countdown in eb_sdk/widgets/_offers.py): "starts in 1 h 20 min", "expires in 4:59",
 * "Mon 23 Nov 09:00 CET". The server sends ISO times; the sidebar recomputes these every
 * second, without asking the server. tests/labextension/phrases.json holds the cases both
 * implementations are tested against.
 */

/** Python's round(): halves go to the even neighbour (round(2.5) == 2). */
export function roundHalfEven(x: number): number {
  const floor = Math.floor(x);
  const diff = x - floor;
  if (diff > 0.5) {
    return floor + 1;
  }
  if (diff < 0.5) {
    return floor;
  }
  return floor % 2 === 0 ? floor : floor + 1;
}

const UNITS: Array<[number, string]> = [
  [86400, 'd'],
  [3600, 'h'],
  [60, 'min'],
  [1, 's']
];

/**
 * `2 h 10 min`, `3 d 4 h`, `45 s`: the two largest units; from a minute up, rounded to
 * the minute. `—` for no duration.
 */
export function humanDuration(seconds: number | null | undefined): string {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) {
    return '—';
  }
  let left = roundHalfEven(Math.abs(seconds));
  if (left >= 60) {
    left = roundHalfEven(left / 60) * 60;
  }
  const parts: Array<[number, string]> = [];
  for (const [size, unit] of UNITS) {
    const count = Math.floor(left / size);
    left -= count * size;
    if (count || parts.length) {
      parts.push([count, unit]);
    }
  }
  const shown = parts
    .slice(0, 2)
    .filter(([n]) => n)
    .map(([n, unit]) => `${n} ${unit}`);
  return shown.join(' ') || '0 s';
}

const PAST: Record<string, string> = {
  starts: 'started',
  expires: 'expired',
  ends: 'ended'
};

/** `starts in 2 h 10 min`, `starts now` or `started 5 min ago` (ms since the epoch). */
export function relative(
  when: number | null | undefined,
  now: number,
  verb = 'starts'
): string {
  if (when === null || when === undefined || Number.isNaN(when)) {
    return '—';
  }
  const delta = (when - now) / 1000;
  if (Math.abs(delta) < 30) {
    return `${verb} now`;
  }
  if (delta > 0) {
    return `${verb} in ${humanDuration(delta)}`;
  }
  return `${PAST[verb] ?? verb} ${humanDuration(delta)} ago`;
}

/** An offer's expiry: `expires in 4:59` (minutes:seconds), `expires in 1 h 5 min`, `expired`. */
export function countdown(expires: number | null | undefined, now: number): string {
  if (expires === null || expires === undefined || Number.isNaN(expires)) {
    return '—';
  }
  const left = Math.trunc((expires - now) / 1000);
  if (left <= 0) {
    return 'expired';
  }
  if (left >= 3600) {
    return `expires in ${humanDuration((expires - now) / 1000)}`;
  }
  const secs = String(left % 60).padStart(2, '0');
  return `expires in ${Math.floor(left / 60)}:${secs}`;
}

/** `Mon 23 Nov 09:00 CET` in `timeZone` (default: the browser's); `—` for no time. */
export function localTime(when: number | null | undefined, timeZone?: string): string {
  if (when === null || when === undefined || Number.isNaN(when)) {
    return '—';
  }
  const format = new Intl.DateTimeFormat('en-GB', {
    weekday: 'short',
    day: '2-digit',
    month: 'short',
    hour: '2-digit',
    minute: '2-digit',
    hourCycle: 'h23',
    timeZone: timeZone || undefined,
    timeZoneName: 'short'
  });
  const part: Record<string, string> = {};
  for (const p of format.formatToParts(new Date(when))) {
    part[p.type] = p.value;
  }
  return `${part.weekday} ${part.day} ${part.month} ${part.hour}:${part.minute} ${
    part.timeZoneName ?? ''
  }`.trim();
}

/** Milliseconds since the epoch of an ISO time from the server (null stays null). */
export function parseTime(iso: string | null | undefined): number | null {
  if (!iso) {
    return null;
  }
  const ms = Date.parse(iso);
  return Number.isNaN(ms) ? null : ms;
}

/**
 * The line under a session's title, as the panel's card says it: when it starts, how long
 * it has run, or when it ran.
 */
export function sessionTiming(
  start: number | null,
  durationSeconds: number | null,
  final: boolean,
  now: number,
  timeZone?: string
): string {
  const duration = humanDuration(durationSeconds);
  if (final) {
    const verb = start !== null && start > now ? 'was to start' : 'started';
    return `${verb} ${localTime(start, timeZone)}, for ${duration}`;
  }
  if (start !== null && start > now) {
    return `${relative(start, now)} (${localTime(start, timeZone)}), for ${duration}`;
  }
  if (start !== null && durationSeconds) {
    const ran = Math.min((now - start) / 1000, durationSeconds);
    return `running ${humanDuration(ran)} of ${duration}`;
  }
  return `from ${localTime(start, timeZone)}, for ${duration}`;
}
