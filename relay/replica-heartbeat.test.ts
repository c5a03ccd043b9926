import { describe, expect, it } from 'vitest';
import { ManualClock } from '../test/helpers/manual-clock.ts';
import { Heartbeat } from './replica-heartbeat.ts';

function setup() {
  const clock = new ManualClock();
  const events: string[] = [];
  const heartbeat = new Heartbeat({
    clock,
    pingIntervalMs: 1_000,
    idleTimeoutMs: 3_000,
    ping: () => events.push(`ping ${clock.now()}`),
    onSilent: (ms) => events.push(`silent ${ms}`),
  });
  return { clock, events, heartbeat };
}

describe('Heartbeat', () => {
  it('pings every interval and never cuts a replica that keeps sending anything', async () => {
    const { clock, events, heartbeat } = setup();
    for (let t = 0; t < 10; t++) {
      await clock.advance(900);
      heartbeat.heard();
    }
    expect(events.filter((e) => e.startsWith('silent'))).toEqual([]);
    expect(events.filter((e) => e.startsWith('ping')).length).toBe(9);
    heartbeat.stop();
  });

  it('cuts a replica silent for the idle timeout, once, exactly when it is due', async () => {
    const { clock, events } = setup();
    await clock.advance(2_999);
    expect(events).toEqual(['ping 1000', 'ping 2000']);
    await clock.advance(1);
    expect(events).toEqual(['ping 1000', 'ping 2000', 'silent 3000']);
    await clock.advance(10_000);
    expect(events).toHaveLength(3);
    expect(clock.pending).toEqual([]);
  });

  it('stops with no timer left behind', () => {
    const { clock, heartbeat } = setup();
    heartbeat.stop();
    expect(clock.pending).toEqual([]);
  });
});
