/**
 * `npm run token -- --name NAME --scope /registry/configmaps/ [--scope …] [--write-scope …] [--file tokens.json]`
 *
 * Creates a client token: prints it once on stdout and appends only its SHA-256 hash, name,
 * read scopes (`--scope`) and write scopes (`--write-scope`; separate: writing does not imply
 * reading, nor reading writing) to the tokens file (created with mode 0600 if missing). The
 * relay reloads the file on change, and replicates the new table to the edge, with no restart. `--revoke NAME` removes
 * a token by name.
 */
import { randomBytes } from 'node:crypto';
import { existsSync, readFileSync, renameSync, writeFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { parseScopeTable, type TokenGrant } from '../core/auth.ts';
import { sha256Hex } from '../core/sha256.ts';

const { values } = parseArgs({
  options: {
    name: { type: 'string' },
    scope: { type: 'string', multiple: true },
    'write-scope': { type: 'string', multiple: true },
    file: { type: 'string', default: process.env.EDGEWATCH_TOKENS_FILE ?? '.data/tokens.json' },
    revoke: { type: 'string' },
  },
});
const file = values.file ?? '.data/tokens.json';
const tokens: TokenGrant[] = existsSync(file)
  ? [...parseScopeTable(JSON.parse(readFileSync(file, 'utf8'))).tokens]
  : [];

function save(next: TokenGrant[]) {
  // Write then rename, so the relay never reads a half-written file.
  const tmp = `${file}.tmp`;
  writeFileSync(tmp, `${JSON.stringify({ tokens: next }, null, 2)}\n`, { mode: 0o600 });
  renameSync(tmp, file);
}

if (values.revoke) {
  const kept = tokens.filter((t) => t.name !== values.revoke);
  if (kept.length === tokens.length) {
    process.stderr.write(`token: no token named ${values.revoke} in ${file}\n`);
    process.exit(1);
  }
  save(kept);
  process.stderr.write(`token: revoked ${values.revoke}\n`);
} else {
  const name = values.name;
  const scopes = values.scope ?? [];
  const writeScopes = values['write-scope'] ?? [];
  const all = [...scopes, ...writeScopes];
  if (!name || all.length === 0 || !all.every((s) => s.startsWith('/'))) {
    process.stderr.write(
      'usage: npm run token -- --name NAME --scope /prefix/ [--scope …] [--write-scope /prefix/ …] [--file FILE]\n',
    );
    process.exit(2);
  }
  if (tokens.some((t) => t.name === name)) {
    process.stderr.write(`token: a token named ${name} exists; --revoke it first\n`);
    process.exit(1);
  }
  const token = `ew_${randomBytes(32).toString('base64url')}`;
  const grant: TokenGrant = { name, sha256: sha256Hex(token), scopes };
  save([...tokens, writeScopes.length > 0 ? { ...grant, writeScopes } : grant]);
  const what = [
    ...(scopes.length > 0 ? [`reading ${scopes.join(', ')}`] : []),
    ...(writeScopes.length > 0 ? [`writing ${writeScopes.join(', ')}`] : []),
  ].join(' and ');
  process.stderr.write(`token: created ${name} for ${what} in ${file}; it is shown once:\n`);
  process.stdout.write(`${token}\n`);
}
