/**
 * What the contract suite needs from an implementation of the read API (../shared/API.md).
 *
 * The suite is written once and run against every tier that serves the API (STYLE.md §12), as
 * the apiserver runs storage/testing/watcher_tests.go against both etcd3 and the cacher: a test
 * file starts the tier, fills in a `ContractTarget` and hands it to `defineContractSuite`.
 */
import type { Etcd3 } from 'etcd3';
import type { Tier } from '../../core/rules.ts';

export interface ContractTarget {
  /** Where the API is served, e.g. `http://127.0.0.1:8080` (no trailing slash). */
  readonly baseUrl: string;
  /** Which tier this is: each 200's `X-Served-By` must be one core/rules.ts allows for it there. */
  readonly tier: Tier;
  /** The tier's exposed prefixes (to parse requests as the tier does). */
  readonly exposedPrefixes: readonly string[];
  /** Every `X-Served-By` this target can answer with, itself first (e.g. `['relay', 'etcd']`). */
  readonly expectedServedBy: readonly string[];
  /** A plain etcd3 client on the target's etcd, for the suite's writes and reference reads. */
  readonly etcd: Etcd3;
  /** One exposed prefix, e.g. `/registry/`; every test works in its own sub-prefix of it. */
  readonly prefix: string;
  /** How long the target waits for rv=n before answering 504 (its `--wait-timeout-ms`). */
  readonly waitTimeoutMs: number;
  /**
   * A revision older than every serving tier's window: the setup wrote it to etcd (under
   * `${prefix}seed/`) before any tier started, so no cache can hold it. Reads at it must come
   * from etcd's history or fail with 410 once etcd has compacted it. At least 2.
   */
  readonly revisionBeforeStart: number;
  /** Compacts etcd's history up to `revision` (the suite calls it last: it is irreversible). */
  compact(revision: number): Promise<void>;
  stop(): Promise<void>;
}

/** A key prefix under no exposed prefix of any target (for the 403 tests). */
export const UNEXPOSED_PREFIX = '/edgewatch-contract-unexposed/';

/** The test's view of the target while the suite runs (set in `beforeAll`). */
export type TargetRef = () => ContractTarget;
