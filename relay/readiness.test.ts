import { describe, expect, it } from 'vitest';
import { Readiness } from '../core/readiness.ts';
import { ManualClock, settle } from '../test/helpers/manual-clock.ts';
import { EtcdProbe } from './readiness.ts';

/** A probe whose answer the test sets; each call settles on the next microtasks. */
function probeOn(clock: ManualClock, unreachableAfterMs = 5_000) {
  let up = true;
  const probe = new EtcdProbe({
    clock,
    probe: () => (up ? Promise.resolve() : Promise.reject(new Error('connect ECONNREFUSED'))),
    intervalMs: 1_000,
    unreachableAfterMs,
  });
  return {
    probe,
    set up(value: boolean) {
      up = value;
    },
  };
}

describe('EtcdProbe', () => {
  it('fails readiness only once etcd has been unreachable longer than allowed, and recovers at the next good probe', async () => {
    const clock = new ManualClock();
    const etcd = probeOn(clock);
    etcd.probe.start();
    await settle();
    expect(etcd.probe.reachable).toBe(true);
    expect(etcd.probe.check()).toBeUndefined();

    etcd.up = false;
    await clock.advance(1_000);
    expect(etcd.probe.reachable).toBe(false);
    expect(etcd.probe.check()).toBeUndefined(); // failing for 0 s: not yet an outage
    for (let i = 0; i < 5; i++) {
      await clock.advance(1_000);
    }
    expect(etcd.probe.check()).toBeUndefined(); // exactly the allowed 5 s
    await clock.advance(1_000);
    expect(etcd.probe.check()).toBe('etcd unreachable for 6 s (Error)');

    etcd.up = true;
    await clock.advance(1_000);
    expect(etcd.probe.check()).toBeUndefined();
    etcd.probe.stop();
    expect(clock.pending).toEqual([]);
  });

  it('counts a probe that never answers as failed', async () => {
    const clock = new ManualClock();
    const probe = new EtcdProbe({
      clock,
      probe: () => new Promise(() => {}),
      intervalMs: 1_000,
      unreachableAfterMs: 0,
    });
    probe.start();
    await settle();
    expect(probe.reachable).toBe(false); // never succeeded yet
    expect(probe.check()).toBeUndefined(); // unreachable for 0 ms, allowed 0 ms
    await clock.advance(2_000); // the probe's deadline
    await clock.advance(1);
    expect(probe.check()).toMatch(/^etcd unreachable/);
    probe.stop();
  });
});

describe('Readiness', () => {
  it('is ready only when every named check passes, and names the failing ones', async () => {
    const readiness = new Readiness();
    let selfCheck: string | undefined;
    readiness.add({ name: 'caches', check: () => undefined });
    readiness.add({ name: 'self-check', check: () => selfCheck });
    expect(readiness.report().ready).toBe(true);
    const ok = readiness.response(true);
    expect(ok.status).toBe(200);
    expect(await ok.text()).toBe('ok\n[+]caches ok\n[+]self-check ok\n');

    selfCheck = 'digest mismatch at 12';
    const failing = readiness.response(false);
    expect(failing.status).toBe(503);
    expect(await failing.text()).toBe(
      'not ready: self-check: digest mismatch at 12\n[-]self-check: digest mismatch at 12\n',
    );
  });

  it('reports a check that throws as failing instead of throwing', () => {
    const readiness = new Readiness();
    readiness.add({
      name: 'broken',
      check: () => {
        throw new Error('boom');
      },
    });
    expect(readiness.report()).toEqual({
      ready: false,
      checks: [{ name: 'broken', ok: false, reason: 'check failed: boom' }],
    });
  });
});
