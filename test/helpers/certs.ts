/**
 * Throw-away certificates for tests of a TLS-secured etcd: a CA, a server certificate for
 * 127.0.0.1/localhost and a client certificate, all signed by that CA, made in-process with
 * node-forge (so the tests need no openssl on the machine; RSA keys come from Node's crypto).
 *
 * Nothing here is fit for production: 2048-bit keys that live for a day, written to a temporary
 * directory that `remove()` deletes.
 */
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import forge from 'node-forge';

/** A certificate and its private key, both PEM. */
export interface Pem {
  readonly cert: string;
  readonly key: string;
}

/** Everything a TLS test needs, as PEM text and as files (etcd takes paths). */
export interface TestCerts {
  readonly ca: Pem;
  /** Server certificate for `127.0.0.1` and `localhost`, signed by `ca`. */
  readonly server: Pem;
  /** Client certificate (CN `clientName`, extended key usage clientAuth), signed by `ca`. */
  readonly client: Pem;
  readonly files: {
    readonly dir: string;
    readonly caCert: string;
    readonly serverCert: string;
    readonly serverKey: string;
    readonly clientCert: string;
    readonly clientKey: string;
  };
  /** Deletes the files. */
  remove(): void;
}

export interface TestCertOptions {
  /** The client certificate's common name; etcd takes it as the user when no token is sent. */
  clientName?: string;
}

export function generateTestCerts(options: TestCertOptions = {}): TestCerts {
  const caKeys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
  const caName = [{ name: 'commonName', value: 'edgewatch test CA' }];
  const caCert = certificate({
    subject: caName,
    issuer: caName,
    publicKey: caKeys.publicKey,
    signingKey: caKeys.privateKey,
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, critical: true },
    ],
  });
  const leaf = (commonName: string, extensions: object[]): Pem => {
    const keys = forge.pki.rsa.generateKeyPair({ bits: 2048, e: 0x10001 });
    const cert = certificate({
      subject: [{ name: 'commonName', value: commonName }],
      issuer: caName,
      publicKey: keys.publicKey,
      signingKey: caKeys.privateKey,
      extensions: [
        { name: 'basicConstraints', cA: false },
        { name: 'keyUsage', digitalSignature: true, keyEncipherment: true, critical: true },
        ...extensions,
      ],
    });
    return { cert: forge.pki.certificateToPem(cert), key: forge.pki.privateKeyToPem(keys.privateKey) };
  };
  const ca: Pem = {
    cert: forge.pki.certificateToPem(caCert),
    key: forge.pki.privateKeyToPem(caKeys.privateKey),
  };
  const server = leaf('127.0.0.1', [
    { name: 'extKeyUsage', serverAuth: true, clientAuth: true },
    {
      name: 'subjectAltName',
      altNames: [
        { type: 7, ip: '127.0.0.1' },
        { type: 2, value: 'localhost' },
      ],
    },
  ]);
  const client = leaf(options.clientName ?? 'edgewatch-relay', [{ name: 'extKeyUsage', clientAuth: true }]);

  const dir = mkdtempSync(path.join(tmpdir(), 'edgewatch-certs-'));
  const write = (name: string, text: string) => {
    const file = path.join(dir, name);
    writeFileSync(file, text, { mode: 0o600 });
    return file;
  };
  return {
    ca,
    server,
    client,
    files: {
      dir,
      caCert: write('ca.crt', ca.cert),
      serverCert: write('server.crt', server.cert),
      serverKey: write('server.key', server.key),
      clientCert: write('client.crt', client.cert),
      clientKey: write('client.key', client.key),
    },
    remove: () => rmSync(dir, { recursive: true, force: true }),
  };
}

interface CertificateSpec {
  subject: forge.pki.CertificateField[];
  issuer: forge.pki.CertificateField[];
  publicKey: forge.pki.PublicKey;
  signingKey: forge.pki.rsa.PrivateKey;
  extensions: object[];
}

let serial = 0;

function certificate(spec: CertificateSpec): forge.pki.Certificate {
  const cert = forge.pki.createCertificate();
  cert.publicKey = spec.publicKey;
  // Positive, unique within the process; a leading 01 keeps the DER integer positive.
  serial++;
  cert.serialNumber = `01${Date.now().toString(16)}${serial.toString(16).padStart(4, '0')}`;
  const now = new Date();
  cert.validity.notBefore = new Date(now.getTime() - 60 * 60 * 1000);
  cert.validity.notAfter = new Date(now.getTime() + 24 * 60 * 60 * 1000);
  cert.setSubject(spec.subject);
  cert.setIssuer(spec.issuer);
  cert.setExtensions(spec.extensions);
  cert.sign(spec.signingKey, forge.md.sha256.create());
  return cert;
}
