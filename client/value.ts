/**
 * An object's value as bytes or text, whichever way the tier sent it (API.md "Objects": `value`
 * when the bytes are UTF-8, `valueBase64` otherwise).
 */
import { base64ToBytes } from '../core/object.ts';
import type { KvObject } from '../core/types.ts';

/** The value's bytes. */
export function valueBytes(object: KvObject): Uint8Array {
  if (object.value !== undefined) return new TextEncoder().encode(object.value);
  return base64ToBytes(object.valueBase64 ?? '');
}

/** The value as text; `undefined` when its bytes are not UTF-8. */
export function valueText(object: KvObject): string | undefined {
  return object.value;
}
