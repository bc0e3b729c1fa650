/**
 * The grants Lease (issue 17 item 3): of several relay replicas exactly one leads; a leader that
 * stops hands over at once (it releases the Lease); a leader that vanishes without a word is
 * replaced once its Lease lapses; a leader that cannot reach the API server stops leading within
 * the renew deadline, before a peer could take over.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { KubeApi } from '../../src/kube-api/client.js';
import { LeaderElection } from '../../src/kube-api/leader-election.js';
import { createLogger } from '../../src/log.js';
import { until } from '../helpers/http.js';
import { type FakeRbac, startFakeRbac } from '../fixtures/fake-rbac.js';

let fake: FakeRbac;
const electors: LeaderElection[] = [];

beforeEach(async () => {
  fake = await startFakeRbac();
});
afterEach(async () => {
  await Promise.all(electors.splice(0).map((e) => e.stop()));
  await fake.close();
});

function elector(identity: string, timing = { leaseDurationMs: 2_000, renewDeadlineMs: 1_200, retryPeriodMs: 200 }): LeaderElection {
  const election = new LeaderElection(new KubeApi(fake.upstream), { namespace: 'kube-relay', name: 'kube-relay-grants-prod', identity, ...timing, log: createLogger('error') });
  electors.push(election);
  election.start();
  return election;
}

const leaders = () => electors.filter((e) => e.isLeader).map((e) => e.identity);
const holder = () => (fake.get('leases/kube-relay', 'kube-relay-grants-prod') as { spec?: { holderIdentity?: string } } | undefined)?.spec?.holderIdentity;

describe('LeaderElection', () => {
  it('elects exactly one of three replicas, the one the Lease names', async () => {
    elector('a');
    elector('b');
    elector('c');
    await until(() => leaders().length === 1, 10_000, 'one leader');
    // Several rounds later there is still exactly one, and it is the Lease's holder.
    await new Promise((resolve) => setTimeout(resolve, 1_000));
    expect(leaders()).toHaveLength(1);
    expect(holder()).toBe(leaders()[0]);
  });

  it('a leader that stops releases the Lease and a peer takes over without waiting it out', async () => {
    const first = elector('a', { leaseDurationMs: 60_000, renewDeadlineMs: 40_000, retryPeriodMs: 200 });
    await until(() => first.isLeader, 10_000, 'a to lead');
    const second = elector('b', { leaseDurationMs: 60_000, renewDeadlineMs: 40_000, retryPeriodMs: 200 });
    await new Promise((resolve) => setTimeout(resolve, 600));
    expect(second.isLeader).toBe(false);
    await first.stop();
    // Well before the 60 s lease duration.
    await until(() => second.isLeader, 10_000, 'b to take over after a released the Lease');
    expect(holder()).toBe('b');
  });

  it('a leader that vanished is replaced once its Lease has lapsed', async () => {
    fake.put('leases/kube-relay', { metadata: { name: 'kube-relay-grants-prod', namespace: 'kube-relay' }, spec: { holderIdentity: 'gone', leaseDurationSeconds: 2, renewTime: new Date().toISOString() } });
    const started = Date.now();
    const successor = elector('b');
    await new Promise((resolve) => setTimeout(resolve, 800));
    expect(successor.isLeader).toBe(false);
    await until(() => successor.isLeader, 15_000, 'b to take over the lapsed Lease');
    expect(Date.now() - started).toBeGreaterThanOrEqual(2_000);
    expect(holder()).toBe('b');
  });

  it('a leader cut off from the API server stops leading within the renew deadline', async () => {
    const leader = elector('a');
    await until(() => leader.isLeader, 10_000, 'a to lead');
    fake.down = true;
    await until(() => !leader.isLeader, 10_000, 'a to stop leading');
    fake.down = false;
    await until(() => leader.isLeader, 10_000, 'a to lead again');
  });
});
