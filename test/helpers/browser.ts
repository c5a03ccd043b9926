/**
 * A real headless Chromium for tests, driven by playwright-core, that comes with `npm ci` alone:
 * the Chromium inside the npm package @sparticuz/chromium (143, the build playwright-core 1.57
 * drives; the package's newer majors need Node 22). Its binary ships brotli-compressed; the
 * first use unpacks it into `.cache/chromium/<version>/` (about 6 s, 190 MB, no root, no
 * network), written to a temporary name and renamed, so an interrupted unpack is never taken
 * for a browser. It needs only libnss3, libnspr4 and libexpat1 from the system, which the
 * machine image has; fonts come from the system (fontconfig, DejaVu).
 *
 * Not the package's own `executablePath()`: that unpacks into the shared /tmp and trusts any
 * file already named /tmp/chromium, whatever its version or state.
 */
import {
  chmodSync,
  createReadStream,
  createWriteStream,
  existsSync,
  mkdirSync,
  readFileSync,
  renameSync,
} from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { pipeline } from 'node:stream/promises';
import { fileURLToPath } from 'node:url';
import { createBrotliDecompress } from 'node:zlib';
import { type Browser, chromium } from 'playwright-core';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '../..');

/** Flags that work on this machine (no sandbox as root, no GPU, nothing phoning home). */
const FLAGS = [
  '--no-sandbox',
  '--disable-gpu',
  '--disable-quic',
  '--no-first-run',
  '--disable-background-networking',
  '--disable-component-update',
  '--disable-sync',
];

/** Unpacks the package's Chromium once; returns the binary's path. */
export async function chromiumBinary(): Promise<string> {
  // The package's `exports` hide its package.json and bin/: found above its entry point.
  let packageDir = path.dirname(createRequire(import.meta.url).resolve('@sparticuz/chromium'));
  let manifest: { name?: string; version?: string } = {};
  for (; packageDir !== path.dirname(packageDir); packageDir = path.dirname(packageDir)) {
    const file = path.join(packageDir, 'package.json');
    if (!existsSync(file)) continue;
    manifest = JSON.parse(readFileSync(file, 'utf8')) as typeof manifest;
    if (manifest.name === '@sparticuz/chromium') break;
  }
  const version = manifest.version;
  if (manifest.name !== '@sparticuz/chromium' || version === undefined) {
    throw new Error('@sparticuz/chromium is not installed (npm ci installs it)');
  }
  const dir = path.join(root, '.cache', 'chromium', version);
  const binary = path.join(dir, 'chromium');
  if (existsSync(binary)) return binary;
  mkdirSync(dir, { recursive: true });
  const partial = `${binary}.${process.pid}.partial`;
  await pipeline(
    createReadStream(path.join(packageDir, 'bin', 'chromium.br')),
    createBrotliDecompress(),
    createWriteStream(partial, { mode: 0o755 }),
  );
  chmodSync(partial, 0o755);
  renameSync(partial, binary);
  return binary;
}

/**
 * Launches headless Chromium. playwright gives every launch a fresh temporary profile
 * (`--user-data-dir`), so nothing carries over between runs.
 */
export async function launchChromium(): Promise<Browser> {
  return chromium.launch({ executablePath: await chromiumBinary(), headless: true, args: FLAGS });
}
