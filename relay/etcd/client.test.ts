import { describe, expect, it } from 'vitest';
import { supportsConsistentCacheReads } from './client.ts';

describe('supportsConsistentCacheReads', () => {
  it.each([
    ['3.5.13', true],
    ['3.5.16', true],
    ['3.5.12', false],
    ['3.4.31', true],
    ['3.4.30', false],
    ['3.6.0', true],
    ['3.7.2', true],
    ['4.0.0', true],
    ['3.3.27', false],
    ['v3.5.13', true],
    ['3.6.0-rc.1', true],
    ['garbage', false],
  ])('says %s → %s', (version, expected) => {
    expect(supportsConsistentCacheReads(version)).toBe(expected);
  });
});
