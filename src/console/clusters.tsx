/**
 * The Clusters page (DESIGN §14): every cluster of the admin's org with its
 * live state (each relay connection per hub replica, refreshed in place
 * every few seconds), adding a cluster (the connector key once, and the
 * `helm install` that connects it), rotating its key and revoking it after
 * a confirmation that names it. Each action is the control operation the
 * admin API and the CLI call.
 */
import type { Request, Response, Router } from 'express';
import type { VNode } from 'preact';
import { type ClusterStatus, clusterStatus } from '../control/cluster-status.js';
import * as ops from '../control/operations.js';
import type { Cluster } from '../issuer/store.js';
import { requireAdmin, formProtection, callerOf } from './auth.js';
import { errorFor, type FormProblem, formProblem, formText, nameNotTyped, queryText } from './forms.js';
import { Banner, Command, CsrfField, Empty, Field, FormBanner, NextPage, PostButton, RevokeByName, SecretOnce, sendFragment, sendPage, Time } from './layout.js';
import { type ConsolePageDeps, pageContext } from './page-deps.js';

/** How often the state of clusters refreshes on the page (a hub replica refreshes its records every 10 s heartbeat, and at once on a change). */
export const LIVE_REFRESH = 'every 3s';

const CLUSTER_FIELDS = { name: ['cluster name', 'cluster "', 'a cluster'], org: ['org'] };

export function addClusterPages(router: Router, deps: ConsolePageDeps): void {
  const signedIn = requireAdmin(deps.auth);
  const forms = [signedIn, ...formProtection];

  router.get('/clusters', signedIn, async (req, res) => {
    await listPage(req, res, deps);
  });
  router.get('/clusters/live', requireAdmin(deps.auth, { live: true }), async (req, res) => {
    sendFragment(res, <ClusterTable rows={await statusRows(deps, req, res)} after={queryText(req, 'continue')} />);
  });
  router.post('/clusters', ...forms, async (req, res) => {
    const input = { name: formText(req, 'name'), org: formText(req, 'org') || undefined };
    try {
      const created = await ops.createCluster(deps.registry, callerOf(res), input);
      deps.record(req, res, 'create', { kind: 'cluster', name: created.cluster.name, org: created.cluster.org });
      res.set('cache-control', 'no-store');
      sendPage(res, pageContext(req, res, 'clusters'), `Cluster ${created.cluster.name} added`, <KeyPage deps={deps} cluster={created.cluster} connectorKey={created.connectorKey} install />, 201);
    } catch (err) {
      await listPage(req, res, deps, { problem: formProblem(err, CLUSTER_FIELDS), values: { name: input.name, org: input.org ?? '' } });
    }
  });
  router.get('/clusters/:name', signedIn, async (req, res) => {
    await detailPage(req, res, deps);
  });
  router.get('/clusters/:name/live', requireAdmin(deps.auth, { live: true }), async (req, res) => {
    const name = String(req.params.name);
    let cluster: Cluster;
    let status: ClusterStatus;
    try {
      cluster = await ops.getCluster(deps.registry, callerOf(res), name);
      status = await clusterStatus(deps.registry, callerOf(res), name, deps.now());
    } catch (err) {
      // Another org's cluster, or none: 404 as the page itself (nothing for htmx to swap in).
      const refused = formProblem(err);
      res.status(refused.status).type('text/plain').send(refused.message);
      return;
    }
    // The relays, and the cluster's state among the page's facts (out of band), so the two never disagree.
    sendFragment(
      res,
      <>
        <RelayTable status={status} name={cluster.name} />
        <ClusterState cluster={cluster} status={status} outOfBand />
      </>,
    );
  });
  router.post('/clusters/:name/rotate-key', ...forms, async (req, res) => {
    try {
      const rotated = await ops.rotateClusterKey(deps.registry, callerOf(res), String(req.params.name));
      deps.record(req, res, 'rotate-key', { kind: 'cluster', name: rotated.cluster.name, org: rotated.cluster.org });
      sendPage(res, pageContext(req, res, 'clusters'), `New connector key for ${rotated.cluster.name}`, <KeyPage deps={deps} cluster={rotated.cluster} connectorKey={rotated.connectorKey} install={false} />);
    } catch (err) {
      await detailPage(req, res, deps, formProblem(err));
    }
  });
  router.get('/clusters/:name/revoke', signedIn, async (req, res) => {
    await revokePage(req, res, deps);
  });
  router.post('/clusters/:name/revoke', ...forms, async (req, res) => {
    const name = String(req.params.name);
    const notTyped = nameNotTyped(req, 'cluster', name);
    if (notTyped) {
      await revokePage(req, res, deps, notTyped);
      return;
    }
    try {
      const cluster = await ops.revokeCluster(deps.registry, callerOf(res), name);
      deps.record(req, res, 'revoke', { kind: 'cluster', name: cluster.name, org: cluster.org });
      res.redirect(303, `/ui/clusters/${encodeURIComponent(cluster.name)}?done=revoked`);
    } catch (err) {
      await revokePage(req, res, deps, formProblem(err));
    }
  });
}

interface StatusRow {
  cluster: Cluster;
  status: ClusterStatus | undefined;
}

async function statusRows(deps: ConsolePageDeps, req: Request, res: Response): Promise<{ items: StatusRow[]; continue?: string | undefined }> {
  const caller = callerOf(res);
  const page = await ops.listClusters(deps.registry, caller, { limit: 50, continue: queryText(req, 'continue'), org: queryText(req, 'org') });
  const items = await Promise.all(page.items.map(async (cluster) => ({ cluster, status: cluster.revokedAt ? undefined : await clusterStatus(deps.registry, caller, cluster.name, deps.now()) })));
  return { items, continue: page.continue };
}

async function listPage(req: Request, res: Response, deps: ConsolePageDeps, form: { problem?: FormProblem; values?: Record<string, string> } = {}): Promise<void> {
  const ctx = pageContext(req, res, 'clusters');
  let rows: { items: StatusRow[]; continue?: string | undefined };
  try {
    rows = await statusRows(deps, req, res);
  } catch (err) {
    const problem = formProblem(err);
    sendPage(res, ctx, 'Clusters', <Banner kind="error">{problem.message}</Banner>, problem.status);
    return;
  }
  const problem = form.problem;
  const askOrg = ctx.caller?.org === undefined;
  const body = (
    <>
      <ClusterTable rows={rows} after={queryText(req, 'continue')} />
      <NextPage path="/ui/clusters" query={{ org: queryText(req, 'org') }} next={rows.continue} />
      <section aria-labelledby="add-cluster">
        <h2 id="add-cluster">Add a cluster</h2>
        <p>A cluster gets a connector key: its relay dials this issuer with it. The key is shown once.</p>
        <form method="post" action="/ui/clusters" class="stacked" novalidate>
          <CsrfField token={ctx.csrf} />
          <FormBanner problem={problem} fields={askOrg ? ['name', 'org'] : ['name']} />
          <Field label="Cluster name" name="name" value={form.values?.name} error={errorFor(problem, 'name')} hint="A DNS label, such as prod-eu: agents name it in their kubeconfig." required />
          {askOrg ? <Field label="Org" name="org" value={form.values?.org} error={errorFor(problem, 'org')} hint="The org whose admins and agents may use the cluster." required /> : null}
          <button type="submit">Add cluster</button>
        </form>
      </section>
    </>
  );
  sendPage(res, ctx, 'Clusters', body, problem?.status ?? 200);
}

function ClusterTable(props: { rows: { items: StatusRow[] }; after: string | undefined }): VNode {
  const live = `/ui/clusters/live${props.after ? `?continue=${encodeURIComponent(props.after)}` : ''}`;
  return (
    <div id="cluster-table" hx-get={live} hx-trigger={LIVE_REFRESH} hx-swap="outerHTML" aria-live="polite">
      {props.rows.items.length === 0 ? (
        <Empty>No clusters yet: add one below.</Empty>
      ) : (
        <table>
          <caption>Clusters and their relays</caption>
          <thead>
            <tr>
              <th scope="col">Cluster</th>
              <th scope="col">Org</th>
              <th scope="col">State</th>
              <th scope="col">Relays</th>
            </tr>
          </thead>
          <tbody>
            {props.rows.items.map(({ cluster, status }) => (
              <tr data-cluster={cluster.name}>
                <th scope="row">
                  <a href={`/ui/clusters/${encodeURIComponent(cluster.name)}`}>{cluster.name}</a>
                </th>
                <td data-label="Org">{cluster.org}</td>
                <td data-label="State">
                  <StateBadge cluster={cluster} status={status} />
                </td>
                <td data-label="Relays">{status?.connected ? status.relays.map((relay) => `${relay.mode} via ${relay.hubReplica}`).join(', ') : '–'}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function StateBadge(props: { cluster: Cluster; status: ClusterStatus | undefined }): VNode {
  const { cluster, status } = props;
  if (cluster.revokedAt)
    return (
      <span class="state revoked">
        revoked <Time at={cluster.revokedAt} />
      </span>
    );
  if (!status) return <span class="state">unknown</span>;
  if (!status.connected)
    return (
      <span class="state down">
        {status.neverConnected ? 'never connected' : 'not connected since'} {status.neverConnected ? null : <Time at={status.notConnectedSince} />}
      </span>
    );
  const notReady = status.relays.find((relay) => !relay.ready);
  if (notReady && status.relays.every((relay) => !relay.ready)) return <span class="state warn">connected, not ready: {notReady.reason}</span>;
  return <span class="state up">connected{notReady ? ` (${status.relays.filter((relay) => relay.ready).length} of ${status.relays.length} ready)` : ''}</span>;
}

/** The state on a cluster's page; the live refresh of its relays replaces it too (`outOfBand`: htmx's hx-swap-oob). */
function ClusterState(props: { cluster: Cluster; status: ClusterStatus | undefined; outOfBand?: boolean }): VNode {
  return (
    <span id="cluster-state" hx-swap-oob={props.outOfBand ? 'true' : undefined}>
      <StateBadge cluster={props.cluster} status={props.status} />
    </span>
  );
}

async function detailPage(req: Request, res: Response, deps: ConsolePageDeps, problem?: FormProblem): Promise<void> {
  const ctx = pageContext(req, res, 'clusters');
  const name = String(req.params.name);
  let cluster: Cluster;
  let status: ClusterStatus | undefined;
  try {
    cluster = await ops.getCluster(deps.registry, callerOf(res), name);
    status = cluster.revokedAt ? undefined : await clusterStatus(deps.registry, callerOf(res), name, deps.now());
  } catch (err) {
    const refused = formProblem(err);
    sendPage(res, ctx, 'Cluster not found', <Banner kind="error">{refused.message}</Banner>, refused.status);
    return;
  }
  const body = (
    <>
      {req.query.done === 'revoked' ? <Banner kind="notice">Cluster {cluster.name} was revoked: its relays are disconnected and its key no longer works.</Banner> : null}
      {problem ? <Banner kind="error">{problem.message}</Banner> : null}
      <dl class="facts">
        <dt>Org</dt>
        <dd>{cluster.org}</dd>
        <dt>Created</dt>
        <dd>
          <Time at={cluster.createdAt} />
        </dd>
        <dt>State</dt>
        <dd>
          <ClusterState cluster={cluster} status={status} />
        </dd>
      </dl>
      {status ? <RelayTable status={status} name={cluster.name} /> : null}
      {cluster.revokedAt ? null : (
        <section aria-labelledby="cluster-actions" class="actions">
          <h2 id="cluster-actions">Actions</h2>
          <PostButton action={`/ui/clusters/${encodeURIComponent(cluster.name)}/rotate-key`} csrf={ctx.csrf} label="Rotate connector key" />
          <a class="button danger" href={`/ui/clusters/${encodeURIComponent(cluster.name)}/revoke`}>
            Revoke cluster…
          </a>
        </section>
      )}
    </>
  );
  sendPage(res, ctx, `Cluster ${cluster.name}`, body, problem?.status ?? 200);
}

function RelayTable(props: { status: ClusterStatus; name: string }): VNode {
  const { status } = props;
  return (
    <div id="relay-table" hx-get={`/ui/clusters/${encodeURIComponent(props.name)}/live`} hx-trigger={LIVE_REFRESH} hx-swap="outerHTML" aria-live="polite">
      {!status.connected ? (
        <p class="state down" data-state="disconnected">
          {status.neverConnected ? (
            <>No relay has connected yet (cluster added <Time at={status.notConnectedSince} />). Install the chart with its connector key.</>
          ) : (
            <>
              Not connected since <Time at={status.notConnectedSince} />.
            </>
          )}
        </p>
      ) : (
        <table data-state="connected">
          <caption>Connected relays</caption>
          <thead>
            <tr>
              <th scope="col">Hub replica</th>
              <th scope="col">Mode</th>
              <th scope="col">Version</th>
              <th scope="col">Connected since</th>
              <th scope="col">Last heard</th>
              <th scope="col">Ready</th>
            </tr>
          </thead>
          <tbody>
            {status.relays.map((relay) => (
              <tr>
                <td data-label="Hub replica">{relay.hubReplica}</td>
                <td data-label="Mode">{relay.mode}</td>
                <td data-label="Version">{relay.version ?? 'not reported'}</td>
                <td data-label="Connected since">
                  <Time at={relay.connectedSince} />
                </td>
                <td data-label="Last heard">
                  <Time at={relay.lastHeard} />
                </td>
                <td data-label="Ready">{relay.ready ? 'ready' : `not ready: ${relay.reason}`}</td>
              </tr>
            ))}
          </tbody>
        </table>
      )}
    </div>
  );
}

function KeyPage(props: { deps: ConsolePageDeps; cluster: Cluster; connectorKey: string; install: boolean }): VNode {
  const { cluster, connectorKey, deps } = props;
  const keyFile = `${cluster.name}.connector-key`;
  const lines = [
    `umask 077; printf '%s' '${connectorKey}' > ${keyFile}`,
    ...(deps.issuerCaPem ? [`cat > issuer-ca.crt <<'EOF'\n${deps.issuerCaPem.trim()}\nEOF`] : []),
    `helm ${props.install ? 'install' : 'upgrade'} kube-relay deploy/helm/kube-relay -n kube-relay${props.install ? ' --create-namespace' : ' --reuse-values'} \\`,
    ...(props.install ? [`  --set clusterName=${cluster.name} \\`, `  --set issuerUrl=${deps.publicUrl} --set hubUrl=${deps.publicUrl} \\`] : []),
    `  --set-file connectorKey=${keyFile}${deps.issuerCaPem && props.install ? ' \\' : ''}`,
    ...(deps.issuerCaPem && props.install ? ['  --set-file issuerCa=issuer-ca.crt'] : []),
  ];
  return (
    <>
      <SecretOnce id="connector-key" label={`Connector key of ${cluster.name}`} value={connectorKey} />
      <Command id="helm-command" label={props.install ? 'Connect the cluster: run this where kubectl and helm reach it' : 'Give the relay its new key (the old one stopped working; its tunnels were closed)'} text={lines.join('\n')} />
      <p>
        <a href={`/ui/clusters/${encodeURIComponent(cluster.name)}`}>Go to {cluster.name}</a>: its state turns connected when the relay dials in.
      </p>
    </>
  );
}

async function revokePage(req: Request, res: Response, deps: ConsolePageDeps, problem?: FormProblem): Promise<void> {
  const ctx = pageContext(req, res, 'clusters');
  const name = String(req.params.name);
  try {
    await ops.getCluster(deps.registry, callerOf(res), name);
  } catch (err) {
    const refused = formProblem(err);
    sendPage(res, ctx, 'Cluster not found', <Banner kind="error">{refused.message}</Banner>, refused.status);
    return;
  }
  const body = (
    <RevokeByName action={`/ui/clusters/${encodeURIComponent(name)}/revoke`} cancelHref={`/ui/clusters/${encodeURIComponent(name)}`} name={name} csrf={ctx.csrf} problem={problem}>
      Revoking <strong>{name}</strong> disconnects its relays at once and its connector key stops working. Agents lose access to it. It cannot be undone, and the name
      cannot be used again.
    </RevokeByName>
  );
  sendPage(res, ctx, `Revoke cluster ${name}?`, body, problem?.status ?? 200);
}
