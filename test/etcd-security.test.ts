/**
 * The relay against a secured etcd: TLS with a private CA, client certificates required
 * (`--client-cert-auth`) and etcd's username/password auth on, a read-only role on the prefix.
 * Also: the relay's flags for it, and that a refused password or a missing client certificate
 * makes reads a 503 Status and /readyz not ready without the password or key in any log line.
 */
import { writeFileSync } from 'node:fs';
import path from 'node:path';
import type { Etcd3 } from 'etcd3';
import { EtcdAuthenticationFailedError } from 'etcd3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { parseConfig } from '../relay/config.ts';
import {
  createEtcdClient,
  EtcdCredentialsRejected,
  type EtcdTls,
  scrubEtcdError,
} from '../relay/etcd/client.ts';
import { jsonLogger, type Logger } from '../relay/log.ts';
import { type RunningRelay, startRelay } from '../relay/server.ts';
import { type EtcdProcess, startEtcd } from '../scripts/lib/etcd-process.ts';
import { WatchReader } from './contract/watch-reader.ts';
import { generateTestCerts, type TestCerts } from './helpers/certs.ts';

const ROOT_PASSWORD = 'root-Pw-7f3a9c1e';
const RELAY_PASSWORD = 'relay-Pw-b84d2e6f';

describe('the relay flags for a secured etcd', () => {
  const files: Record<string, string> = {
    '/ca.pem': '-----BEGIN CERTIFICATE-----\nCA\n-----END CERTIFICATE-----\n',
    '/client.pem': '-----BEGIN CERTIFICATE-----\nCLIENT\n-----END CERTIFICATE-----\n',
    '/client.key': '-----BEGIN PRIVATE KEY-----\nKEY\n-----END PRIVATE KEY-----\n',
    '/password': 's3cret pass\n',
  };
  const readFile = (file: string) => {
    const text = files[file];
    if (text === undefined) throw Object.assign(new Error(`ENOENT: ${file}`), { code: 'ENOENT' });
    return Buffer.from(text);
  };
  const parse = (argv: string[], env: Record<string, string> = {}) => parseConfig(argv, env, readFile);
  const https = ['--etcd', 'https://127.0.0.1:2379'];

  it('reads the CA, client certificate and key files as PEM', () => {
    const config = parse([
      ...https,
      '--etcd-ca',
      '/ca.pem',
      '--etcd-cert',
      '/client.pem',
      '--etcd-key',
      '/client.key',
    ]);
    expect(config.etcdTls?.ca?.toString()).toBe(files['/ca.pem']);
    expect(config.etcdTls?.cert?.toString()).toBe(files['/client.pem']);
    expect(config.etcdTls?.key?.toString()).toBe(files['/client.key']);
    expect(config.etcdAuth).toBeUndefined();
  });

  it('takes the same files from ETCD_CA_FILE, ETCD_CERT_FILE and ETCD_KEY_FILE', () => {
    const config = parse([], {
      ETCD_ENDPOINTS: 'https://127.0.0.1:2379',
      ETCD_CA_FILE: '/ca.pem',
      ETCD_CERT_FILE: '/client.pem',
      ETCD_KEY_FILE: '/client.key',
    });
    expect(config.etcdTls?.ca?.toString()).toBe(files['/ca.pem']);
    expect(config.etcdTls?.key?.toString()).toBe(files['/client.key']);
  });

  it('leaves TLS and auth off for plain endpoints and no flags', () => {
    const config = parse(['--etcd', 'http://127.0.0.1:2379']);
    expect(config.etcdTls).toBeUndefined();
    expect(config.etcdAuth).toBeUndefined();
  });

  it('reads the password from a file without its trailing newline', () => {
    const config = parse(['--etcd-user', 'relay', '--etcd-password-file', '/password']);
    expect(config.etcdAuth).toEqual({ username: 'relay', password: 's3cret pass' });
  });

  it('takes the user and password from ETCD_USERNAME and ETCD_PASSWORD', () => {
    const config = parse([], { ETCD_USERNAME: 'relay', ETCD_PASSWORD: 'from-env' });
    expect(config.etcdAuth).toEqual({ username: 'relay', password: 'from-env' });
  });

  it('refuses a password on the command line, where ps shows it', () => {
    expect(() => parse(['--etcd-user', 'relay', '--etcd-password', 'visible'])).toThrow(
      /--etcd-password-file/,
    );
  });

  it('refuses TLS files with http:// endpoints, a certificate without its key, and mixed schemes', () => {
    expect(() => parse(['--etcd', 'http://127.0.0.1:2379', '--etcd-ca', '/ca.pem'])).toThrow(/https:\/\//);
    expect(() => parse([...https, '--etcd-cert', '/client.pem'])).toThrow(/go together/);
    expect(() => parse(['--etcd', 'https://a:2379,http://b:2379'])).toThrow(/mix/);
  });

  it('refuses a user without a password and a password without a user', () => {
    expect(() => parse(['--etcd-user', 'relay'])).toThrow(/needs a password/);
    expect(() => parse([], { ETCD_PASSWORD: 'x' })).toThrow(/--etcd-user/);
  });

  it('names a missing file without failing later', () => {
    expect(() => parse([...https, '--etcd-ca', '/missing.pem'])).toThrow(
      '--etcd-ca: cannot read /missing.pem (ENOENT)',
    );
  });
});

describe('errors from a secured etcd client', () => {
  const key =
    '-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASC\nBKcwggSjAgEAAoIBAQC7\n-----END PRIVATE KEY-----\n';
  const security = {
    auth: { username: 'relay', password: 'hunter2-secret' },
    tls: { key: Buffer.from(key) },
  };

  it('turn a refused password into EtcdCredentialsRejected naming the user only', () => {
    const scrubbed = scrubEtcdError(
      new EtcdAuthenticationFailedError('etcdserver: authentication failed, invalid user ID or password'),
      security,
    );
    expect(scrubbed).toBeInstanceOf(EtcdCredentialsRejected);
    expect(String(scrubbed)).toBe(
      'EtcdCredentialsRejected: etcd rejected the password of user "relay" (authentication failed)',
    );
  });

  it('have the password and any line of the key redacted, keeping their class', () => {
    const error = new TypeError(`bad: hunter2-secret and ${key} and MIIEvQIBADANBgkqhkiG9w0BAQEFAASC`);
    const scrubbed = scrubEtcdError(error, security);
    expect(scrubbed).toBeInstanceOf(TypeError);
    const text = `${String(scrubbed)} ${(scrubbed as Error).stack}`;
    expect(text).not.toContain('hunter2-secret');
    expect(text).not.toContain('MIIEvQIBADANBgkqhkiG9w0BAQEFAASC');
    expect(text).not.toContain('BKcwggSjAgEAAoIBAQC7');
    expect(text).toContain('[redacted]');
  });

  it('are left alone when they hold no secret', () => {
    const error = new Error('etcdserver: mvcc: required revision has been compacted');
    expect(scrubEtcdError(error, security)).toBe(error);
    expect(error.message).toBe('etcdserver: mvcc: required revision has been compacted');
  });
});

describe('the relay against etcd with TLS, client certificates and auth', () => {
  let certs: TestCerts;
  let etcd: EtcdProcess;
  let admin: Etcd3;
  let tls: EtcdTls;
  const relays: RunningRelay[] = [];

  beforeAll(async () => {
    certs = generateTestCerts();
    etcd = await startEtcd({
      tls: {
        certFile: certs.files.serverCert,
        keyFile: certs.files.serverKey,
        clientCaFile: certs.files.caCert,
      },
    });
    tls = {
      ca: Buffer.from(certs.ca.cert),
      cert: Buffer.from(certs.client.cert),
      key: Buffer.from(certs.client.key),
    };
    const setup = createEtcdClient({ endpoints: etcd.endpoint, tls });
    try {
      await setup.put('/registry/before').value('1');
      const root = await setup.user('root').create(ROOT_PASSWORD);
      await root.addRole('root');
      const reader = await setup.role('edgewatch-reader').create();
      await reader.grant({ permission: 'Read', range: setup.range({ prefix: '/registry/' }) });
      const relay = await setup.user('relay').create(RELAY_PASSWORD);
      await relay.addRole(reader);
      await setup.auth.authEnable();
    } finally {
      setup.close();
    }
    admin = createEtcdClient({
      endpoints: etcd.endpoint,
      tls,
      auth: { username: 'root', password: ROOT_PASSWORD },
    });
    writeFileSync(path.join(certs.files.dir, 'relay-password'), `${RELAY_PASSWORD}\n`, { mode: 0o600 });
    writeFileSync(path.join(certs.files.dir, 'wrong-password'), 'not-the-password\n', { mode: 0o600 });
  }, 60_000);

  afterAll(async () => {
    for (const relay of relays) await relay.stop();
    admin?.close();
    await etcd?.stop();
    certs?.remove();
  });

  /** Starts a relay on the secured etcd with `args` added to its flags. */
  const relayWith = async (args: string[], log: Logger) => {
    const config = parseConfig(
      ['--port', '0', '--etcd', etcd.endpoint, '--prefix', '/registry/', ...args],
      // Client auth of the relay's own API is another subject; ignored where it does not exist.
      { EDGEWATCH_INSECURE_NO_AUTH: '1' },
    );
    const relay = await startRelay(config, log);
    relays.push(relay);
    return relay;
  };
  const file = (name: string) => path.join(certs.files.dir, name);
  const clientCert = () => ['--etcd-cert', certs.files.clientCert, '--etcd-key', certs.files.clientKey];

  it('lists, watches and serves reads over TLS with a client certificate and a password', async () => {
    const log = recordingLogger();
    const relay = await relayWith(
      [
        '--etcd-ca',
        certs.files.caCert,
        ...clientCert(),
        '--etcd-user',
        'relay',
        '--etcd-password-file',
        file('relay-password'),
      ],
      log,
    );
    await relay.ready();

    const fromCache = await fetch(`${relay.url}/v1/list/registry/?resourceVersion=0`);
    expect(fromCache.status).toBe(200);
    expect(fromCache.headers.get('X-Served-By')).toBe('relay');
    const list = (await fromCache.json()) as { items: { key: string; value: string }[] };
    expect(list.items.map((o) => [o.key, o.value])).toEqual([['/registry/before', '1']]);
    const latest = await fetch(`${relay.url}/v1/list/registry/`);
    expect(latest.status).toBe(200);
    expect((await fetch(`${relay.url}/readyz`)).status).toBe(200);

    const listedAt = fromCache.headers.get('X-Resource-Version');
    const watch = await WatchReader.open(
      `${relay.url}/v1/list/registry/?watch=true&resourceVersion=${listedAt}`,
    );
    try {
      await admin.put('/registry/after').value('2');
      const event = await watch.nextEvent();
      expect(event.type).toBe('ADDED');
      expect(event.object).toMatchObject({ key: '/registry/after', value: '2' });
    } finally {
      watch.close();
    }
    const get = await fetch(`${relay.url}/v1/kv/registry/after`);
    expect(get.status).toBe(200);
    log.expectNoSecrets([RELAY_PASSWORD, ROOT_PASSWORD, ...keyTexts(certs.client.key)]);
  });

  it('answers 503 and is not ready when etcd refuses the password, without logging it', async () => {
    const log = recordingLogger();
    const relay = await relayWith(
      [
        '--etcd-ca',
        certs.files.caCert,
        ...clientCert(),
        '--etcd-user',
        'relay',
        '--etcd-password-file',
        file('wrong-password'),
      ],
      log,
    );
    await log.waitFor((line) => line.includes('list failed'));

    const res = await fetch(`${relay.url}/v1/list/registry/`);
    expect(res.status).toBe(503);
    const status = (await res.json()) as { kind: string; code: number; message: string };
    expect(status).toMatchObject({ kind: 'Status', code: 503 });
    expect(status.message).toContain('etcd rejected the password of user "relay"');
    expect(status.message).not.toContain('not-the-password');
    expect((await fetch(`${relay.url}/v1/kv/registry/before`)).status).toBe(503);
    const ready = await fetch(`${relay.url}/readyz`);
    expect(ready.status).toBe(503);
    expect(await ready.text()).toContain('not ready');
    log.expectNoSecrets(['not-the-password', RELAY_PASSWORD, ...keyTexts(certs.client.key)]);
  });

  it('answers 503 and is not ready without a client certificate, without logging the password', async () => {
    const log = recordingLogger();
    const relay = await relayWith(
      [
        '--etcd-ca',
        certs.files.caCert,
        '--etcd-user',
        'relay',
        '--etcd-password-file',
        file('relay-password'),
      ],
      log,
    );
    await log.waitFor((line) => line.includes('list failed'));

    const res = await fetch(`${relay.url}/v1/list/registry/?resourceVersion=0`);
    expect(res.status).toBe(503);
    expect(await res.json()).toMatchObject({ kind: 'Status', code: 503 });
    expect((await fetch(`${relay.url}/readyz`)).status).toBe(503);
    log.expectNoSecrets([RELAY_PASSWORD, ...keyTexts(certs.client.key)]);
  });

  it('answers 503 when etcd is reached with a CA that did not sign its certificate', async () => {
    const other = generateTestCerts();
    try {
      const log = recordingLogger();
      const relay = await relayWith(
        [
          '--etcd-ca',
          other.files.caCert,
          ...clientCert(),
          '--etcd-user',
          'relay',
          '--etcd-password-file',
          file('relay-password'),
        ],
        log,
      );
      await log.waitFor((line) => line.includes('list failed'));
      expect((await fetch(`${relay.url}/v1/list/registry/`)).status).toBe(503);
      expect((await fetch(`${relay.url}/readyz`)).status).toBe(503);
      log.expectNoSecrets([RELAY_PASSWORD, ...keyTexts(certs.client.key)]);
    } finally {
      other.remove();
    }
  });
});

/** The key's PEM and each base64 line of it: none may show up anywhere. */
function keyTexts(pem: string): string[] {
  return [pem.trim(), ...pem.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'))];
}

interface RecordingLogger extends Logger {
  readonly lines: string[];
  /** Resolves at the first line (already logged or to come) that `match` accepts; fails after 10 s. */
  waitFor(match: (line: string) => boolean): Promise<string>;
  expectNoSecrets(secrets: string[]): void;
}

/** A JSON logger that keeps its lines, for assertions on what the relay logged. */
function recordingLogger(): RecordingLogger {
  const lines: string[] = [];
  const waiters: { match: (line: string) => boolean; resolve: (line: string) => void }[] = [];
  const log = jsonLogger('relay', (line) => {
    lines.push(line);
    for (const w of [...waiters]) {
      if (w.match(line)) {
        waiters.splice(waiters.indexOf(w), 1);
        w.resolve(line);
      }
    }
  });
  return {
    ...log,
    lines,
    waitFor: (match) => {
      const found = lines.find(match);
      if (found !== undefined) return Promise.resolve(found);
      return new Promise<string>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no such log line; got:\n${lines.join('')}`)),
          10_000,
        );
        waiters.push({
          match,
          resolve: (line) => {
            clearTimeout(timer);
            resolve(line);
          },
        });
      });
    },
    expectNoSecrets: (secrets) => {
      const text = lines.join('');
      expect(lines.length).toBeGreaterThan(0);
      for (const secret of secrets)
        expect(text.includes(secret), `a log line holds ${secret.slice(0, 8)}…`).toBe(false);
    },
  };
}
