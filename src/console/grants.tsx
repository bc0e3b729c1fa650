/**
 * The Grants page (DESIGN §11, §14): the org's grants with each one's state
 * in its cluster (refreshed in place while relays apply them), filtered by
 * cluster, agent or group; adding a grant and removing one. Each action is
 * the grant operation the admin API and the CLI call, with the same checks
 * and sentences, recorded and pushed to the cluster's relays as the API does.
 */
import type { Request, Response, Router } from 'express';
import { toApiError } from '../admin-api/request.js';
import type { AdminCaller } from '../control/caller.js';
import * as grants from '../control/grants.js';
import * as ops from '../control/operations.js';
import { type GrantView, grantView } from '../control/views.js';
import { parseDuration } from '../duration.js';
import { BUILT_IN_ROLES, GRANT_ID } from '../grants/grant.js';
import type { Cluster } from '../issuer/store.js';
import { callerOf, formProtection, requireAdmin } from './auth.js';
import { type FormProblem, formProblem, formText, queryText } from './forms.js';
import { AddGrantForm, FilterForm, type GrantFilters, type GrantFormValues, GrantStates, GrantTable, type RoleChoices } from './grant-views.js';
import { Banner, NextPage, sendFragment, sendPage } from './layout.js';
import { type ConsolePageDeps, pageContext } from './page-deps.js';

const PAGE_SIZE = 50;

/**
 * Which field each of the grant operation's sentences is about, by how it starts. The
 * cluster-admin confirmation first: its sentence starts "role cluster-admin …" too.
 */
const GRANT_FIELDS = {
  confirmClusterAdmin: ['role cluster-admin gives'],
  cluster: ['cluster', 'no cluster'],
  grantee: ['agent', 'group', 'no agent', 'a grant needs a grantee', 'a grant is for one agent'],
  role: ['role'],
  namespace: ['namespace'],
  expires: ['a grant expires', 'a grant may last', 'expires'],
};
const FILTER_FIELDS = { cluster: ['cluster', 'no cluster'], agent: ['agent', 'no agent'], group: ['group'] };

export function addGrantPages(router: Router, deps: ConsolePageDeps): void {
  const signedIn = requireAdmin(deps.auth);
  const forms = [signedIn, ...formProtection];

  router.get('/grants', signedIn, async (req, res) => {
    await listPage(req, res, deps);
  });
  router.get('/grants/live', requireAdmin(deps.auth, { live: true }), async (req, res) => {
    const listed = await listedGrants(deps, callerOf(res), filtersOf(req), queryText(req, 'continue'));
    sendFragment(res, <GrantStates grants={listed.problem ? [] : listed.grants} />);
  });
  router.post('/grants', ...forms, async (req, res) => {
    const values = formValues(req);
    const expiresInMs = values.expires === '' ? undefined : parseDuration(values.expires);
    if (values.expires !== '' && (expiresInMs === undefined || expiresInMs === 0)) {
      // The admin API's check of its `expires` field, before the operation's own checks.
      const problem = { status: 422, field: 'expires', message: `Expires must be a duration such as 30m, 8h or 7d, not ${JSON.stringify(values.expires).slice(0, 40)}.` };
      await listPage(req, res, deps, { problem, values });
      return;
    }
    try {
      const grant = await grants.createGrant(
        deps.registry,
        callerOf(res),
        {
          cluster: values.cluster,
          ...(values.granteeKind === 'group' ? { group: values.grantee || undefined } : { agent: values.grantee || undefined }),
          role: values.role,
          namespace: values.namespace || undefined,
          expiresInMs,
          confirmClusterAdmin: values.confirmClusterAdmin,
        },
        { maxDurationMs: deps.maxGrantDurationMs, now: deps.now },
      );
      deps.record(req, res, 'create', { kind: 'grant', name: grant.id, org: grant.org });
      deps.onGrantsChanged?.(grant.cluster);
      res.redirect(303, `/ui/grants?cluster=${encodeURIComponent(grant.cluster)}&added=${grant.id}`);
    } catch (err) {
      await listPage(req, res, deps, { problem: formProblem(err, GRANT_FIELDS), values });
    }
  });
  router.post('/grants/:id/remove', ...forms, async (req, res) => {
    try {
      const removed = await grants.removeGrant(deps.registry, callerOf(res), String(req.params.id));
      deps.record(req, res, 'remove', { kind: 'grant', name: removed.id, org: removed.org });
      deps.onGrantsChanged?.(removed.cluster);
      res.redirect(303, `/ui/grants?removed=${removed.id}`);
    } catch (err) {
      const problem = formProblem(err);
      sendPage(res, pageContext(req, res, 'grants'), problem.status === 404 ? 'Grant not found' : 'Grant not removed', <Banner kind="error">{problem.message}</Banner>, problem.status);
    }
  });
}

function filtersOf(req: Request): GrantFilters {
  return { cluster: queryText(req, 'cluster'), agent: queryText(req, 'agent'), group: queryText(req, 'group') };
}

function formValues(req: Request): GrantFormValues {
  return {
    cluster: formText(req, 'cluster'),
    granteeKind: formText(req, 'granteeKind') === 'group' ? 'group' : 'agent',
    grantee: formText(req, 'grantee'),
    role: formText(req, 'role'),
    namespace: formText(req, 'namespace'),
    expires: formText(req, 'expires'),
    confirmClusterAdmin: formText(req, 'confirmClusterAdmin') === 'on',
  };
}

/** One page of the caller's grants as the API shows them, or why the filters were refused. */
async function listedGrants(deps: ConsolePageDeps, caller: AdminCaller, filters: GrantFilters, after: string | undefined): Promise<{ grants: GrantView[]; continue?: string | undefined; problem?: FormProblem }> {
  try {
    const page = await grants.listGrants(deps.registry, caller, { ...filters, limit: PAGE_SIZE, continue: after });
    const now = deps.now();
    return { grants: page.items.map((grant) => grantView(grant, now)), continue: page.continue };
  } catch (err) {
    return { grants: [], problem: formProblem(err, FILTER_FIELDS) };
  }
}

/** Every cluster a grant may be added on: the caller's, not revoked. */
async function activeClusters(deps: ConsolePageDeps, caller: AdminCaller): Promise<Cluster[]> {
  const clusters: Cluster[] = [];
  let next: string | undefined;
  do {
    const page = await ops.listClusters(deps.registry, caller, { limit: ops.MAX_PAGE_SIZE, continue: next });
    clusters.push(...page.items.filter((cluster) => !cluster.revokedAt));
    next = page.continue;
  } while (next);
  return clusters;
}

/** The built-in roles, and the custom ones `cluster` reported when there is such a cluster of the caller's. */
async function roleChoices(deps: ConsolePageDeps, caller: AdminCaller, cluster: string | undefined): Promise<RoleChoices> {
  const builtIn = Object.entries(BUILT_IN_ROLES).map(([name, clusterRole]) => ({ name, clusterRole }));
  if (!cluster) return { builtIn };
  try {
    const roles = await grants.listRoles(deps.registry, caller, cluster);
    return { builtIn, custom: { cluster: roles.cluster, names: roles.custom.map((role) => role.name) } };
  } catch (err) {
    if (!toApiError(err)) throw err;
    return { builtIn }; // no such cluster of the caller's: the filter shows that sentence
  }
}

async function listPage(req: Request, res: Response, deps: ConsolePageDeps, form: { problem?: FormProblem; values?: GrantFormValues } = {}): Promise<void> {
  const ctx = pageContext(req, res, 'grants');
  const caller = callerOf(res);
  const filters = filtersOf(req);
  const after = queryText(req, 'continue');
  const [listed, clusters] = await Promise.all([listedGrants(deps, caller, filters, after), activeClusters(deps, caller)]);
  const roles = await roleChoices(deps, caller, form.values?.cluster || filters.cluster);
  const values = form.values ?? defaultValues(filters, clusters);
  const added = GRANT_ID.test(queryText(req, 'added') ?? '') ? queryText(req, 'added') : undefined;
  const removed = GRANT_ID.test(queryText(req, 'removed') ?? '') ? queryText(req, 'removed') : undefined;
  const listProblem = listed.problem;
  const body = (
    <>
      {added ? <Banner kind="notice">Grant {added} added. It is pending until its cluster's relay applies it; its state below changes by itself.</Banner> : null}
      {removed ? <Banner kind="notice">Grant {removed} was removed: its cluster's relay deletes the binding.</Banner> : null}
      <FilterForm filters={filters} problem={listProblem} />
      {listProblem && !listProblem.field ? <Banner kind="error">{listProblem.message}</Banner> : null}
      {listProblem ? null : <GrantTable grants={listed.grants} filters={filters} after={after} csrf={ctx.csrf} filtered={Boolean(filters.cluster || filters.agent || filters.group || after)} />}
      <NextPage path="/ui/grants" query={{ ...filters }} next={listed.continue} />
      <section aria-labelledby="add-grant">
        <h2 id="add-grant">Add a grant</h2>
        <p>A grant gives one role on one cluster to an agent or to a team's group, in one namespace or in all of them. The cluster's relay applies it within seconds.</p>
        <AddGrantForm csrf={ctx.csrf} clusters={clusters} allOrgs={caller.org === undefined} roles={roles} values={values} problem={form.problem} maxDurationMs={deps.maxGrantDurationMs} />
      </section>
    </>
  );
  sendPage(res, ctx, 'Grants', body, form.problem?.status ?? listProblem?.status ?? 200);
}

/** The add form before anything is typed: the filter's cluster, agent or group filled in. */
function defaultValues(filters: GrantFilters, clusters: Cluster[]): GrantFormValues {
  const cluster = clusters.find((c) => c.name === filters.cluster)?.name ?? clusters[0]?.name ?? '';
  return { cluster, granteeKind: filters.group ? 'group' : 'agent', grantee: filters.group ?? filters.agent ?? '', role: '', namespace: '', expires: '', confirmClusterAdmin: false };
}
