import { describe, expect, it } from 'vitest';
import { type Bindings, parseEnv } from './env.ts';

type Vars = { [K in keyof Bindings]?: Bindings[K] & string };

/** What wrangler.toml and `npm start` give the Worker, plus `vars`. */
function env(vars: Vars = {}): Bindings {
  return {
    RELAY_URL: 'http://127.0.0.1:8080/',
    PREFIXES: '/registry/',
    DEV_COLO: 'local',
    REPLICATION_SECRET: 'secret',
    // The namespace binding is never read by parseEnv.
    REPLICA: {} as Bindings['REPLICA'],
    ...vars,
  };
}

describe('parseEnv', () => {
  it('fills the defaults for every optional setting', () => {
    expect(parseEnv(env())).toEqual({
      relayUrl: 'http://127.0.0.1:8080',
      prefixes: ['/registry/'],
      devColo: 'local',
      replicationSecret: 'secret',
      continueSecret: undefined,
      waitMs: 1_000,
      idleMs: 60_000,
      heartbeatMs: 5_000,
      watchStallMs: 10_000,
      insecureNoAuth: false,
      rateLimit: { ratePerSecond: 100, burst: 200 },
      selfCheckMs: 60_000,
      testHooks: false,
      k8sResources: [],
    });
  });

  it('reads every setting it is given', () => {
    const settings = parseEnv(
      env({
        PREFIXES: ' /a/ , /b/',
        CONTINUE_SECRET: 'c',
        EDGE_WAIT_MS: '250',
        EDGE_IDLE_MS: '0',
        EDGE_HEARTBEAT_MS: '100',
        EDGEWATCH_INSECURE_NO_AUTH: '1',
        EDGE_RATE_LIMIT_RPS: '0',
        EDGE_RATE_LIMIT_BURST: '3',
        EDGE_SELF_CHECK_MS: '500',
        EDGEWATCH_TEST_HOOKS: '1',
        K8S_RESOURCES: '{"resources":[{"group":"example.com","resource":"widgets","shortNames":["wd"]}]}',
      }),
    );
    expect(settings).toMatchObject({
      prefixes: ['/a/', '/b/'],
      continueSecret: 'c',
      waitMs: 250,
      idleMs: 0,
      heartbeatMs: 100,
      insecureNoAuth: true,
      rateLimit: { ratePerSecond: 0, burst: 3 },
      selfCheckMs: 500,
      testHooks: true,
      k8sResources: [{ group: 'example.com', resource: 'widgets', shortNames: ['wd'] }],
    });
  });

  it('treats an empty string as unset, as the tests and `--var X:` do', () => {
    expect(parseEnv(env({ EDGE_WAIT_MS: '', EDGEWATCH_INSECURE_NO_AUTH: '' }))).toMatchObject({
      waitMs: 1_000,
      insecureNoAuth: false,
    });
  });

  it.each([
    ['EDGE_WAIT_MS', 'abc', /EDGE_WAIT_MS must be a whole number/],
    ['EDGE_IDLE_MS', '-5', /EDGE_IDLE_MS must be a whole number of at least 0/],
    ['EDGE_HEARTBEAT_MS', '0', /EDGE_HEARTBEAT_MS must be a whole number of at least 1/],
    ['EDGE_WAIT_MS', '1.5', /EDGE_WAIT_MS/],
    ['EDGE_IDLE_MS', '3000000000', /EDGE_IDLE_MS is longer than setTimeout allows/],
    ['EDGE_RATE_LIMIT_BURST', '0', /EDGE_RATE_LIMIT_BURST must be a whole number of at least 1/],
    ['EDGEWATCH_INSECURE_NO_AUTH', 'yes', /EDGEWATCH_INSECURE_NO_AUTH must be 1 or 0/],
    ['RELAY_URL', 'relay:8080', /RELAY_URL must be an http/],
    ['RELAY_URL', 'not a url', /RELAY_URL is not a URL/],
    ['PREFIXES', 'registry/', /a prefix must start with '\//],
    ['PREFIXES', ' , ', /PREFIXES lists no prefix/],
    ['REPLICATION_SECRET', '', /REPLICATION_SECRET is not set/],
    ['K8S_RESOURCES', '{"resources":[{"resource":"Bad Name"}]}', /K8S_RESOURCES: .*resource name/],
  ] as const)('refuses %s=%j with an error naming it', (name, value, message) => {
    expect(() => parseEnv(env({ [name]: value }))).toThrow(message);
  });
});
