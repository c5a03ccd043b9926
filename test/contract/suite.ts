/**
 * The read/watch contract suite (API.md), written once and run against every tier that serves
 * the API (STYLE.md §12): `defineContractSuite('relay', setup)` in test/relay-contract.test.ts,
 * and the same call with an edge setup for the Worker.
 *
 * Every test works in its own sub-prefix of `target.prefix`, writes through a plain etcd3
 * client and compares responses with etcd itself (etcd-model.ts). Compaction tests run last.
 */
import { afterAll, beforeAll, describe } from 'vitest';
import { errorsContract } from './errors.ts';
import { expiryContract } from './expiry.ts';
import { getContract } from './get.ts';
import { k8sContract } from './k8s.ts';
import { listContract } from './list.ts';
import type { ContractTarget } from './target.ts';
import { watchContract } from './watch.ts';

export type { ContractTarget } from './target.ts';

/** Declares the whole suite for one implementation; `setup` runs once, `stop` after the last test. */
export function defineContractSuite(name: string, setup: () => Promise<ContractTarget>): void {
  describe(`the read API contract against ${name}`, () => {
    let current: ContractTarget | undefined;
    const target = (): ContractTarget => {
      if (!current) throw new Error(`${name}: the contract target did not start (see beforeAll)`);
      return current;
    };
    beforeAll(async () => {
      current = await setup();
    });
    afterAll(async () => {
      await current?.stop();
    });

    getContract(target);
    listContract(target);
    errorsContract(target);
    watchContract(target);
    k8sContract(target);
    expiryContract(target);
  });
}
