/**
 * Kubernetes label and field selectors (`labelSelector=`, `fieldSelector=` on lists and watches),
 * parsed once per request into a predicate over an object's metadata.
 *
 * Hand-written: the grammar is apimachinery's `labels.Parse` / `fields.ParseSelector`, and there is
 * no maintained JavaScript implementation (client-node only builds selector strings). What is
 * accepted, as apimachinery does:
 *
 *   label selector  := requirement ("," requirement)*
 *   requirement     := key | "!" key | key ("=" | "==" | "!=") value
 *                    | key ("in" | "notin") "(" value ("," value)* ")"
 *
 * `!=` and `notin` also match objects that lack the label; `key` and `!key` test presence. Keys
 * are `[prefix/]name` (prefix a DNS subdomain, name ≤ 63 of `[A-Za-z0-9._-]`, alphanumeric at both
 * ends); values are empty or the same shape as a name. Field selectors take `=`, `==` and `!=` on
 * `metadata.name` and `metadata.namespace`, which every resource has, and on the fields
 * Kubernetes supports for some built-in kinds (an Event's `involvedObject.name`, a Pod's
 * `spec.nodeName`: catalogue.ts); a field the object lacks compares as the empty string.
 */
import { BadRequest } from '../errors.ts';

/** What a selector looks at: an object's name, namespace and labels. */
export interface SelectorSubject {
  readonly name: string;
  readonly namespace: string | undefined;
  readonly labels: Readonly<Record<string, string>>;
  /** Another field's value as a field selector compares it (`spec.nodeName`); '' when absent. */
  field?(path: string): string;
}

export type LabelRequirement =
  | { readonly op: 'exists' | 'notExists'; readonly key: string }
  | { readonly op: 'in' | 'notIn'; readonly key: string; readonly values: readonly string[] };

export type FieldRequirement = {
  /** `metadata.name`, `metadata.namespace`, or a field the resource supports (catalogue.ts). */
  readonly field: string;
  readonly op: 'equals' | 'notEquals';
  readonly value: string;
};

/** A parsed selector pair; `matches` is what lists and watches filter with. */
export interface Selector {
  readonly labels: readonly LabelRequirement[];
  readonly fields: readonly FieldRequirement[];
  /** True when the selector selects everything (no requirement at all). */
  readonly everything: boolean;
  matches(subject: SelectorSubject): boolean;
}

const NAME = /^[A-Za-z0-9]([A-Za-z0-9._-]{0,61}[A-Za-z0-9])?$/;
const DNS_SUBDOMAIN = /^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$/;

/** Parses both selectors of a request. Throws `BadRequest` with apimachinery's wording. */
export function parseSelector(
  labelSelector: string | undefined,
  fieldSelector: string | undefined,
  moreFields: ReadonlySet<string> = NO_FIELDS,
): Selector {
  const labels = labelSelector === undefined ? [] : parseLabelSelector(labelSelector);
  const fields = fieldSelector === undefined ? [] : parseFieldSelector(fieldSelector, moreFields);
  return {
    labels,
    fields,
    everything: labels.length === 0 && fields.length === 0,
    matches: (subject) =>
      labels.every((r) => labelMatches(r, subject.labels)) && fields.every((r) => fieldMatches(r, subject)),
  };
}

export function labelMatches(r: LabelRequirement, labels: Readonly<Record<string, string>>): boolean {
  const has = Object.hasOwn(labels, r.key);
  switch (r.op) {
    case 'exists':
      return has;
    case 'notExists':
      return !has;
    case 'in':
      return has && r.values.includes(labels[r.key] as string);
    case 'notIn':
      return !has || !r.values.includes(labels[r.key] as string);
  }
}

function fieldMatches(r: FieldRequirement, subject: SelectorSubject): boolean {
  const actual =
    r.field === 'metadata.name'
      ? subject.name
      : r.field === 'metadata.namespace'
        ? (subject.namespace ?? '')
        : (subject.field?.(r.field) ?? '');
  return r.op === 'equals' ? actual === r.value : actual !== r.value;
}

/**
 * The single name a field selector pins (`metadata.name=x`), if any: lets a list skip to one key.
 */
export function pinnedName(selector: Selector): string | undefined {
  const pins = selector.fields.filter((f) => f.field === 'metadata.name' && f.op === 'equals');
  return pins.length === 1 ? pins[0]?.value : undefined;
}

// ---- labels -------------------------------------------------------------------------------

/** A tiny tokenizer over the selector text: identifiers, operators, parentheses and commas. */
type Token =
  | { t: 'id'; v: string }
  | { t: 'op'; v: '=' | '==' | '!=' | '!' }
  | { t: '(' }
  | { t: ')' }
  | { t: ',' };

function tokenize(text: string): Token[] {
  const tokens: Token[] = [];
  let i = 0;
  while (i < text.length) {
    const c = text[i] as string;
    if (c === ' ' || c === '\t' || c === '\n') {
      i++;
    } else if (c === '(' || c === ')' || c === ',') {
      tokens.push({ t: c });
      i++;
    } else if (c === '=' || c === '!') {
      if (text[i + 1] === '=') {
        tokens.push({ t: 'op', v: c === '=' ? '==' : '!=' });
        i += 2;
      } else {
        tokens.push({ t: 'op', v: c === '=' ? '=' : '!' });
        i++;
      }
    } else {
      let j = i;
      while (j < text.length && !' \t\n(),=!'.includes(text[j] as string)) j++;
      tokens.push({ t: 'id', v: text.slice(i, j) });
      i = j;
    }
  }
  return tokens;
}

function parseLabelSelector(text: string): LabelRequirement[] {
  const tokens = tokenize(text);
  const requirements: LabelRequirement[] = [];
  let i = 0;
  const fail = (why: string): never => {
    throw new BadRequest(`unable to parse requirement: ${why}`);
  };
  while (i < tokens.length) {
    let negate = false;
    const first = tokens[i];
    if (first?.t === 'op' && first.v === '!') {
      negate = true;
      i++;
    }
    const keyToken = tokens[i];
    if (keyToken?.t !== 'id') return fail(`found '${describe(keyToken)}', expected: identifier`);
    const key = validKey(keyToken.v);
    i++;
    const next = tokens[i];
    if (negate || next === undefined || next.t === ',') {
      requirements.push({ op: negate ? 'notExists' : 'exists', key });
    } else if (next.t === 'op' && next.v !== '!') {
      i++;
      const valueToken = tokens[i];
      let value = '';
      if (valueToken?.t === 'id') {
        value = validValue(valueToken.v);
        i++;
      } else if (valueToken !== undefined && valueToken.t !== ',') {
        fail(`found '${describe(valueToken)}', expected: identifier`);
      }
      requirements.push({ op: next.v === '!=' ? 'notIn' : 'in', key, values: [value] });
    } else if (next.t === 'id' && (next.v === 'in' || next.v === 'notin')) {
      i++;
      if (tokens[i]?.t !== '(') fail(`found '${describe(tokens[i])}', expected: '('`);
      i++;
      const values: string[] = [];
      if (tokens[i]?.t === ')') fail("for 'in', 'notin' operators, values set can't be empty");
      for (;;) {
        const v = tokens[i];
        if (v?.t === 'id') {
          values.push(validValue(v.v));
          i++;
        } else {
          values.push(''); // an empty element between commas is the empty value, as apimachinery reads it
        }
        const sep = tokens[i];
        if (sep?.t === ')') {
          i++;
          break;
        }
        if (sep?.t !== ',') fail(`found '${describe(sep)}', expected: ',' or ')'`);
        i++;
      }
      requirements.push({ op: next.v === 'in' ? 'in' : 'notIn', key, values: dedupe(values) });
    } else {
      fail(`found '${describe(next)}', expected: in, notin, =, ==, !=, or end of string`);
    }
    const sep = tokens[i];
    if (sep === undefined) break;
    if (sep.t !== ',') fail(`found '${describe(sep)}', expected: ',' or end of string`);
    i++;
    if (i === tokens.length) fail("found '', expected: identifier after ','");
  }
  return requirements;
}

function describe(token: Token | undefined): string {
  if (token === undefined) return '';
  return token.t === 'id' || token.t === 'op' ? token.v : token.t;
}

function dedupe(values: string[]): string[] {
  return [...new Set(values)];
}

function validKey(key: string): string {
  const slash = key.indexOf('/');
  const prefix = slash < 0 ? undefined : key.slice(0, slash);
  const name = slash < 0 ? key : key.slice(slash + 1);
  if (prefix !== undefined && (prefix.length > 253 || !DNS_SUBDOMAIN.test(prefix))) {
    throw new BadRequest(
      `unable to parse requirement: invalid label key "${key}": prefix part must be a DNS subdomain`,
    );
  }
  if (!NAME.test(name)) {
    throw new BadRequest(
      `unable to parse requirement: invalid label key "${key}": name part must consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
    );
  }
  return key;
}

function validValue(value: string): string {
  if (value !== '' && !NAME.test(value)) {
    throw new BadRequest(
      `unable to parse requirement: invalid label value: "${value}": a valid label must be an empty string or consist of alphanumeric characters, '-', '_' or '.', and must start and end with an alphanumeric character`,
    );
  }
  return value;
}

// ---- fields -------------------------------------------------------------------------------

const FIELDS = new Set(['metadata.name', 'metadata.namespace']);
const NO_FIELDS: ReadonlySet<string> = new Set();

function parseFieldSelector(text: string, moreFields: ReadonlySet<string>): FieldRequirement[] {
  const requirements: FieldRequirement[] = [];
  for (const part of text.split(',')) {
    const term = part.trim();
    if (term === '') continue;
    const match = /^([^=!]+?)\s*(==|!=|=)\s*(.*)$/.exec(term);
    if (match === null) throw new BadRequest(`invalid selector: '${text}'; can't understand '${term}'`);
    const [, field = '', op, value = ''] = match;
    if (!FIELDS.has(field) && !moreFields.has(field)) {
      throw new BadRequest(`field label not supported: ${field}`);
    }
    requirements.push({
      field,
      op: op === '!=' ? 'notEquals' : 'equals',
      value: value.trim(),
    });
  }
  return requirements;
}
