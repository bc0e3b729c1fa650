/** `npm run e2e:cluster`: the e2e cluster for a person, until Ctrl-C. */
import { buildBinaries, startCluster } from './cluster.js';
import { bootstrapCluster } from './bootstrap.js';

const binaries = buildBinaries();
const cluster = await startCluster(binaries);
await bootstrapCluster(cluster, binaries.helm);
process.stdout.write(
  [
    `e2e cluster running (work directory ${cluster.dir})`,
    `  admin kubeconfig: ${cluster.adminKubeconfig}`,
    `  try: kubectl --kubeconfig ${cluster.adminKubeconfig} get pods -A`,
    `  relay upstream kubeconfig (the relay's ServiceAccount): ${cluster.dir}/relay.kubeconfig`,
    `  helm (built from the module proxy): ${binaries.helm}`,
    'Press Ctrl-C to stop.',
    '',
  ].join('\n'),
);
await new Promise<void>((resolve) => {
  process.once('SIGINT', resolve);
  process.once('SIGTERM', resolve);
});
await cluster.stop();
