// The sidebar's phrases are the SDK's: the same cases as tests/labextension/test_phrases.py.
import { describe, expect, it } from 'vitest';

import cases from '../phrases.json';
import {
  countdown,
  humanDuration,
  localTime,
  parseTime,
  relative,
  roundHalfEven,
  sessionTiming
} from '../../../src/format';

const NOW = Date.parse('2026-11-21T13:00:00Z');

describe('phrases shared with eb_sdk', () => {
  it.each(cases.human_duration as Array<[number, string]>)('humanDuration(%s) = %s', (s, text) => {
    expect(humanDuration(s)).toBe(text);
  });
  it.each(cases.relative as Array<[number, string, string]>)(
    'relative(+%s s, %s) = %s',
    (s, verb, text) => {
      expect(relative(NOW + s * 1000, NOW, verb)).toBe(text);
    }
  );
  it.each(cases.countdown as Array<[number, string]>)('countdown(+%s s) = %s', (s, text) => {
    expect(countdown(NOW + s * 1000, NOW)).toBe(text);
  });
});

describe('format', () => {
  it('rounds halves to even, as Python does', () => {
    expect([0.5, 1.5, 2.5, 3.5, 2.4, 2.6].map(roundHalfEven)).toEqual([0, 2, 2, 4, 2, 3]);
  });

  it('says nothing for missing times', () => {
    expect(humanDuration(null)).toBe('—');
    expect(relative(null, NOW)).toBe('—');
    expect(countdown(undefined, NOW)).toBe('—');
    expect(localTime(null)).toBe('—');
    expect(parseTime('not a time')).toBeNull();
  });

  it('shows local times like the SDK', () => {
    expect(localTime(NOW, 'UTC')).toBe('Sat 21 Nov 13:00 UTC');
    expect(localTime(NOW, 'Europe/Berlin')).toBe('Sat 21 Nov 14:00 CET');
  });

  it('says when a session starts, runs or ran', () => {
    const start = NOW + 80 * 60_000;
    expect(sessionTiming(start, 1800, false, NOW, 'UTC')).toBe(
      'starts in 1 h 20 min (Sat 21 Nov 14:20 UTC), for 30 min'
    );
    expect(sessionTiming(NOW - 600_000, 1800, false, NOW)).toBe('running 10 min of 30 min');
    expect(sessionTiming(NOW - 600_000, 1800, true, NOW, 'UTC')).toBe(
      'started Sat 21 Nov 12:50 UTC, for 30 min'
    );
    // cancelled before it started
    expect(sessionTiming(start, 1800, true, NOW, 'UTC')).toBe(
      'was to start Sat 21 Nov 14:20 UTC, for 30 min'
    );
  });
});
