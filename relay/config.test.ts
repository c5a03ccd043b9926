import { describe, expect, it } from 'vitest';
import { parseConfig } from './config.ts';

const parse = (argv: string[], env: Record<string, string> = {}) => parseConfig(argv, env);

describe('parseConfig', () => {
  it('takes explicit Kubernetes resources from a file (or K8S_RESOURCES) and from repeated flags', () => {
    const table = '{"resources":[{"group":"example.com","resource":"widgets","shortNames":["wd"]}]}';
    const config = parseConfig(
      ['--k8s-resources', '/etc/k8s.json', '--k8s-resource', 'v1/configmaps,short=conf'],
      {},
      () => Buffer.from(table),
    );
    expect(config.k8sResources).toEqual([
      { group: 'example.com', resource: 'widgets', shortNames: ['wd'] },
      { group: '', resource: 'configmaps', version: 'v1', shortNames: ['conf'] },
    ]);
    expect(parse([], { K8S_RESOURCES: table }).k8sResources).toHaveLength(1);
    expect(parse([]).k8sResources).toEqual([]);
    expect(() => parse(['--k8s-resource', 'widgets'])).toThrow(/version\/resource/);
  });

  it('has defaults for everything', () => {
    expect(parse([])).toMatchObject({
      host: '127.0.0.1',
      port: 8080,
      etcdEndpoints: ['http://127.0.0.1:2379'],
      prefixes: ['/registry/'],
      replicationSecrets: [],
      insecureNoAuth: false,
      waitTimeoutMs: 3000,
    });
  });

  it('takes flags as --name value and --name=value, repeats where a list is meant', () => {
    const config = parse([
      '--port=9000',
      '--host',
      '0.0.0.0',
      '--prefix',
      '/a/',
      '--prefix=/b/',
      '--secret',
      'one',
      '--secret',
      'two',
      '--insecure-no-auth',
      '--wait-timeout-ms',
      '500',
    ]);
    expect(config).toMatchObject({
      host: '0.0.0.0',
      port: 9000,
      prefixes: ['/a/', '/b/'],
      replicationSecrets: ['one', 'two'],
      insecureNoAuth: true,
      waitTimeoutMs: 500,
    });
  });

  it('prefers a flag to its environment variable, which beats the default', () => {
    const env = { RELAY_PORT: '7000', EDGEWATCH_PREFIXES: '/x/, /y/', REPLICATION_SECRET: 'a,b' };
    expect(parse([], env)).toMatchObject({
      port: 7000,
      prefixes: ['/x/', '/y/'],
      replicationSecrets: ['a', 'b'],
    });
    expect(parse(['--port', '7001', '--prefix', '/z/'], env)).toMatchObject({
      port: 7001,
      prefixes: ['/z/'],
    });
    expect(parse([], { EDGEWATCH_INSECURE_NO_AUTH: '1' }).insecureNoAuth).toBe(true);
  });

  it('takes the continue-token secret from --continue-secret or CONTINUE_SECRET, none by default', () => {
    expect(parse([]).continueSecret).toBeUndefined();
    expect(parse([], { CONTINUE_SECRET: 'env' }).continueSecret).toBe('env');
    expect(parse(['--continue-secret', 'flag'], { CONTINUE_SECRET: 'env' }).continueSecret).toBe('flag');
  });

  it('trims values, as a pasted one often ends in a newline', () => {
    expect(parse(['--secret', 's3cret\n', '--host', ' h '])).toMatchObject({
      replicationSecrets: ['s3cret'],
      host: 'h',
    });
  });

  it.each([
    [['--nope', 'x'], /--nope/],
    [['stray'], /stray/],
    [['--port'], /--port/],
    [['--port', 'abc'], /bad port/],
    [['--wait-timeout-ms', '-1'], /--wait-timeout-ms/],
    [['--prefix', 'registry/'], /must start with '\/'/],
    [['--etcd-password', 'visible'], /--etcd-password-file/],
    [['--etcd-password=visible'], /--etcd-password-file/],
  ])('refuses %j with an error naming the problem', (argv, message) => {
    expect(() => parse(argv)).toThrow(message);
  });
});
