// The refresh: backs off while nothing changes, pauses while nobody looks.
import { describe, expect, it } from 'vitest';

import { BackoffPoller, ITimers, PollMode } from '../../../src/poller';

/** Timers the test advances by hand. */
class FakeTimers implements ITimers {
  pending: Array<{ fn: () => void; ms: number; id: number }> = [];
  next = 1;
  set(fn: () => void, ms: number): unknown {
    const id = this.next++;
    this.pending.push({ fn, ms, id });
    return id;
  }
  clear(handle: unknown): void {
    this.pending = this.pending.filter(t => t.id !== handle);
  }
  /** Fire the one pending timer; returns its delay. */
  async fire(): Promise<number> {
    expect(this.pending.length).toBe(1);
    const timer = this.pending.shift()!;
    timer.fn();
    await new Promise(resolve => setTimeout(resolve, 0));
    return timer.ms;
  }
}

function setup(changes: boolean[], mode: { value: PollMode }) {
  const timers = new FakeTimers();
  let calls = 0;
  const poller = new BackoffPoller({
    tick: async () => {
      const changed = changes[calls] ?? false;
      calls++;
      if (changed === undefined) {
        throw new Error('no answer');
      }
      return changed;
    },
    mode: () => mode.value,
    min: 1000,
    max: 8000,
    watch: 60000,
    timers
  });
  return { poller, timers, calls: () => calls };
}

describe('BackoffPoller', () => {
  it('doubles the pause while nothing changes, up to max, and resets on a change', async () => {
    const mode = { value: 'active' as PollMode };
    const { poller, timers } = setup([true, false, false, false, false, true, false], mode);
    await poller.refresh();
    const delays = [];
    for (let i = 0; i < 6; i++) {
      delays.push(await timers.fire());
    }
    expect(delays).toEqual([1000, 2000, 4000, 8000, 8000, 1000]);
  });

  it('backs off after failures too', async () => {
    const mode = { value: 'active' as PollMode };
    const timers = new FakeTimers();
    const poller = new BackoffPoller({
      tick: async () => {
        throw new Error('server down');
      },
      mode: () => mode.value,
      min: 1000,
      max: 8000,
      watch: 60000,
      timers
    });
    await poller.refresh();
    expect([await timers.fire(), await timers.fire(), await timers.fire()]).toEqual([
      2000, 4000, 8000
    ]);
  });

  it('pauses while the sidebar is hidden and nothing is in flight', async () => {
    const mode = { value: 'active' as PollMode };
    const { poller, timers, calls } = setup([true, false], mode);
    await poller.refresh();
    mode.value = 'paused';
    await timers.fire();
    expect(timers.pending).toHaveLength(0);
    expect(calls()).toBe(2);
  });

  it('only watches, slowly, while hidden with something in flight', async () => {
    const mode = { value: 'watch' as PollMode };
    const { poller, timers } = setup([true, true], mode);
    await poller.refresh();
    expect(await timers.fire()).toBe(60000);
    expect(timers.pending[0].ms).toBe(60000);
  });

  it('polls at once when the sidebar is shown again', async () => {
    const mode = { value: 'paused' as PollMode };
    const { poller, timers, calls } = setup([false, false, false], mode);
    await poller.refresh();
    expect(calls()).toBe(1);
    expect(timers.pending).toHaveLength(0);
    mode.value = 'active';
    poller.wake();
    await new Promise(resolve => setTimeout(resolve, 0));
    expect(calls()).toBe(2);
    expect(poller.delay).toBe(2000);
    expect(timers.pending[0].ms).toBe(2000);
  });

  it('refresh() resets the backoff and replaces the pending poll', async () => {
    const mode = { value: 'active' as PollMode };
    const { poller, timers, calls } = setup([false, false, false, false], mode);
    await poller.refresh();
    await timers.fire();
    expect(timers.pending[0].ms).toBe(4000);
    await poller.refresh();
    expect(calls()).toBe(3);
    expect(timers.pending).toHaveLength(1);
    expect(timers.pending[0].ms).toBe(2000);
  });

  it('stops for good when disposed', async () => {
    const mode = { value: 'active' as PollMode };
    const { poller, timers } = setup([true], mode);
    await poller.refresh();
    poller.dispose();
    expect(timers.pending).toHaveLength(0);
    poller.wake();
    expect(timers.pending).toHaveLength(0);
  });
});
