/**
 * Key order and prefixes, exactly as etcd sees them.
 *
 * etcd orders keys by their UTF-8 bytes. UTF-8 byte order equals Unicode code point order, but
 * JavaScript's `<` compares UTF-16 code units, which disagrees for one case only: a character
 * outside the BMP (stored as a surrogate pair, 0xD800–0xDFFF) against a BMP character in
 * U+E000–U+FFFF. `'\u{1F600}' < '\uFFFD'` is true in JS, yet etcd puts 😀 (F0 9F 98 80) after
 * U+FFFD (EF BF BD). A store ordered by `<` would page a list in a different order from etcd and
 * hand out continue tokens that skip or repeat keys, so every ordered structure uses
 * `compareKeys`.
 *
 * Keys that were not valid UTF-8 in etcd were decoded lossily (U+FFFD) before they got here;
 * such keys cannot be told apart and are out of scope (etcd keys in practice are UTF-8 paths).
 */

/**
 * Orders two keys by their UTF-8 bytes (etcd's order) without encoding them.
 *
 * Fast path: equal strings and strings whose first differing code units are both below 0xD800
 * (all of ASCII and most scripts) compare like `<`. Only when a surrogate or a U+E000–U+FFFF unit
 * differs are the units remapped so that surrogates sort above U+FFFF.
 */
export function compareKeys(a: string, b: string): number {
  if (a === b) return 0;
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x === y) continue;
    if (x < 0xd800 && y < 0xd800) return x - y;
    return fixup(x) - fixup(y);
  }
  return a.length - b.length;
}

/**
 * Maps a UTF-16 unit >= 0xD800 so that surrogates (astral code points) sort after U+E000–U+FFFF.
 * Two surrogate pairs that differ keep their relative order: high surrogates before low ones
 * never compete, since a pair's first unit is always a high surrogate.
 */
function fixup(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}

/** Whether `key` lies under `prefix` (byte-prefix, as etcd's `--prefix` range). */
export function isUnder(key: string, prefix: string): boolean {
  return key.startsWith(prefix);
}

/**
 * The smallest key after `key` in etcd's order: the same bytes plus a NUL. Where the next page
 * of a list starts (continue tokens, etcd ranges, snapshot chunks), as in Kubernetes.
 */
export function keyAfter(key: string): string {
  return `${key}\u0000`;
}

/**
 * `keyAfter` for a key as etcd's bytes, where it may not be valid UTF-8 (the relay's paged etcd
 * reads): going through a string there would turn such a key into U+FFFD and page backwards.
 */
export function keyAfterBytes(key: Uint8Array): Uint8Array {
  const next = new Uint8Array(key.length + 1);
  next.set(key);
  return next;
}
