/** Fetches etcd once before any test file runs, so parallel test files never race to install it. */
import { etcdBinary } from '../scripts/lib/etcd-process.ts';

export default function setup() {
  etcdBinary();
}
