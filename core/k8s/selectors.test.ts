import { describe, expect, it } from 'vitest';
import { BadRequest } from '../errors.ts';
import { parseSelector, pinnedName } from './selectors.ts';

const subject = (labels: Record<string, string>, name = 'a', namespace: string | undefined = 'default') => ({
  name,
  namespace,
  labels,
});
const matches = (label: string | undefined, labels: Record<string, string>, field?: string) =>
  parseSelector(label, field).matches(subject(labels));

describe('label selectors', () => {
  it('match equality with =, == and inequality with != (which also matches a missing label)', () => {
    expect(matches('app=web', { app: 'web' })).toBe(true);
    expect(matches('app==web', { app: 'web' })).toBe(true);
    expect(matches('app=web', { app: 'db' })).toBe(false);
    expect(matches('app!=web', { app: 'db' })).toBe(true);
    expect(matches('app!=web', {})).toBe(true);
    expect(matches('app!=web', { app: 'web' })).toBe(false);
  });

  it('match set membership with in and notin, notin matching a missing label', () => {
    expect(matches('tier in (front, back)', { tier: 'back' })).toBe(true);
    expect(matches('tier in (front,back)', { tier: 'mid' })).toBe(false);
    expect(matches('tier in (front)', {})).toBe(false);
    expect(matches('tier notin (front,back)', { tier: 'mid' })).toBe(true);
    expect(matches('tier notin (front,back)', {})).toBe(true);
    expect(matches('tier notin (front,back)', { tier: 'front' })).toBe(false);
  });

  it('match presence with key and absence with !key', () => {
    expect(matches('app', { app: '' })).toBe(true);
    expect(matches('app', {})).toBe(false);
    expect(matches('!app', {})).toBe(true);
    expect(matches('!app', { app: 'x' })).toBe(false);
  });

  it('require every comma-separated requirement, with prefixed keys and empty values', () => {
    const labels = { 'example.com/team': 'a', env: '' };
    expect(matches('example.com/team=a,env=', labels)).toBe(true);
    expect(matches('example.com/team=a, env=x', labels)).toBe(false);
    expect(matches(' app = web , !gone ', { app: 'web' })).toBe(true);
  });

  it('refuse malformed selectors with 400 BadRequest', () => {
    for (const bad of [
      'app=web,',
      '=web',
      'app in web',
      'app in ()',
      'app in (a b)',
      '-bad=x',
      'app=%',
      'a/b/c=x',
    ]) {
      expect(() => parseSelector(bad, undefined), bad).toThrow(BadRequest);
    }
    expect(() => parseSelector('app=', undefined)).not.toThrow();
  });
});

describe('field selectors', () => {
  it('match metadata.name and metadata.namespace with =, == and !=', () => {
    expect(matches(undefined, {}, 'metadata.name=a')).toBe(true);
    expect(matches(undefined, {}, 'metadata.name==b')).toBe(false);
    expect(matches(undefined, {}, 'metadata.namespace=default,metadata.name!=b')).toBe(true);
    expect(matches(undefined, {}, 'metadata.namespace!=default')).toBe(false);
  });

  it('refuse other fields with Kubernetes message', () => {
    expect(() => parseSelector(undefined, 'spec.nodeName=x')).toThrow(
      'field label not supported: spec.nodeName',
    );
    expect(() => parseSelector(undefined, 'metadata.name')).toThrow(BadRequest);
  });

  it('say which name a metadata.name= selector pins, so a list can read one key', () => {
    expect(pinnedName(parseSelector(undefined, 'metadata.name=x'))).toBe('x');
    expect(pinnedName(parseSelector(undefined, 'metadata.name!=x'))).toBeUndefined();
    expect(parseSelector(undefined, undefined).everything).toBe(true);
  });
});
