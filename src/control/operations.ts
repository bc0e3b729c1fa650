/**
 * The control plane's operations (DESIGN §10, STYLE 12): one function per
 * operation, taking the caller, doing the org check itself, and calling the
 * Registry (which validates input and holds the keys' hashing). The local
 * CLI and the admin API are thin adapters over these functions, so both
 * doors apply one set of rules.
 *
 * An org admin sees and changes only its own org; another org's object is
 * answered exactly as a missing one ("no agent named …", NotFoundError), so
 * an admin cannot learn what other orgs hold. Names are unique across the
 * issuer (a Kubernetes user agent:NAME is global), so creating a name that
 * another org holds is refused, without saying whose it is or when it was
 * made or revoked.
 */
import { isDnsLabel } from '../identity.js';
import { ForbiddenError, InvalidInputError, NotFoundError, type Registry } from '../issuer/registry.js';
import { tokenRefusal } from '../issuer/mint.js';
import { type Admin, type Agent, AlreadyExistsError, type Cluster, type ListFilter } from '../issuer/store.js';
import { type Caller, confinedOrg, mayManage } from './caller.js';

/** The largest page a list returns; a caller asking for more gets this many. */
export const MAX_PAGE_SIZE = 500;

export interface PageRequest {
  /** Items per page, 1..MAX_PAGE_SIZE; undefined: every item (the local CLI). */
  limit?: number | undefined;
  /** The `continue` of the previous page. */
  continue?: string | undefined;
  /** Only this org's objects (an all-orgs caller); an org admin may name only its own. */
  org?: string | undefined;
}

export interface Page<T> {
  items: T[];
  /** Present when more items follow: pass it as `continue` for the next page. */
  continue?: string;
}

// ---- agents ----

export async function createAgent(registry: Registry, caller: Caller, input: { name: string; org?: string | undefined; teams: string[] }): Promise<{ agent: Agent; apiKey: string }> {
  const org = orgForCreate(caller, input.org, 'agent');
  await refuseNameOfAnotherOrg(caller, 'agent', input.name, await findIf(input.name, (n) => registry.findAgent(n)));
  const apiKey = await registry.createAgent(input.name, org, input.teams);
  return { agent: (await registry.findAgent(input.name))!, apiKey };
}

export async function getAgent(registry: Registry, caller: Caller, name: string): Promise<Agent> {
  const agent = await findIf(name, (n) => registry.findAgent(n));
  if (!agent || !mayManage(caller, agent.org)) throw notFound('agent', name);
  return agent;
}

export function listAgents(registry: Registry, caller: Caller, page: PageRequest = {}): Promise<Page<Agent>> {
  return listPage(caller, page, (filter) => registry.listAgents(filter));
}

export async function revokeAgent(registry: Registry, caller: Caller, name: string): Promise<Agent> {
  await getAgent(registry, caller, name);
  await registry.revokeAgent(name);
  const revoked = (await registry.findAgent(name))!;
  await registry.audit.endAgentSessions(name, revoked.revokedAt!);
  return revoked;
}

export async function rotateAgentKey(registry: Registry, caller: Caller, name: string): Promise<{ agent: Agent; apiKey: string }> {
  const agent = await getAgent(registry, caller, name);
  return { agent, apiKey: await registry.rotateAgentKey(name) };
}

// ---- clusters ----

export async function createCluster(registry: Registry, caller: Caller, input: { name: string; org?: string | undefined }): Promise<{ cluster: Cluster; connectorKey: string }> {
  const org = orgForCreate(caller, input.org, 'cluster');
  await refuseNameOfAnotherOrg(caller, 'cluster', input.name, await findIf(input.name, (n) => registry.findCluster(n)));
  const connectorKey = await registry.createCluster(input.name, org);
  return { cluster: (await registry.findCluster(input.name))!, connectorKey };
}

export async function getCluster(registry: Registry, caller: Caller, name: string): Promise<Cluster> {
  const cluster = await findIf(name, (n) => registry.findCluster(n));
  if (!cluster || !mayManage(caller, cluster.org)) throw notFound('cluster', name);
  return cluster;
}

export function listClusters(registry: Registry, caller: Caller, page: PageRequest = {}): Promise<Page<Cluster>> {
  return listPage(caller, page, (filter) => registry.listClusters(filter));
}

export async function revokeCluster(registry: Registry, caller: Caller, name: string): Promise<Cluster> {
  await getCluster(registry, caller, name);
  await registry.revokeCluster(name);
  return (await registry.findCluster(name))!;
}

export async function rotateClusterKey(registry: Registry, caller: Caller, name: string): Promise<{ cluster: Cluster; connectorKey: string }> {
  const cluster = await getCluster(registry, caller, name);
  return { cluster, connectorKey: await registry.rotateClusterKey(name) };
}

// ---- admins ----

/**
 * An admin of one org (`org`) or of all orgs (`allOrgs`), exactly one of the two. An org admin
 * may create admins of its own org only (the org may be left out); only the operator and
 * all-orgs admins create all-orgs admins.
 */
export async function createAdmin(registry: Registry, caller: Caller, input: { name: string; org?: string | undefined; allOrgs?: boolean | undefined }): Promise<{ admin: Admin; adminKey: string }> {
  if (input.allOrgs && input.org !== undefined) throw new InvalidInputError('an admin is either of one org (org) or of all orgs (allOrgs), not both');
  if (input.allOrgs && confinedOrg(caller) !== undefined) throw new ForbiddenError(`an admin of org "${confinedOrg(caller)}" cannot create an all-orgs admin; ask an all-orgs admin or the operator`);
  const org = input.allOrgs ? undefined : orgForCreate(caller, input.org, 'admin', 'or allOrgs for an all-orgs admin');
  await refuseNameOfAnotherOrg(caller, 'admin', input.name, await findIf(input.name, (n) => registry.findAdmin(n)));
  const adminKey = await registry.createAdmin(input.name, org);
  return { admin: (await registry.findAdmin(input.name))!, adminKey };
}

export async function getAdmin(registry: Registry, caller: Caller, name: string): Promise<Admin> {
  const admin = await findIf(name, (n) => registry.findAdmin(n));
  if (!admin || !mayManage(caller, admin.org)) throw notFound('admin', name);
  return admin;
}

/** An org admin lists its org's admins; the all-orgs admins are not in its list. */
export function listAdmins(registry: Registry, caller: Caller, page: PageRequest = {}): Promise<Page<Admin>> {
  return listPage(caller, page, (filter) => registry.listAdmins(filter));
}

export async function revokeAdmin(registry: Registry, caller: Caller, name: string): Promise<Admin> {
  await getAdmin(registry, caller, name);
  await registry.revokeAdmin(name);
  return (await registry.findAdmin(name))!;
}

export async function rotateAdminKey(registry: Registry, caller: Caller, name: string): Promise<{ admin: Admin; adminKey: string }> {
  const admin = await getAdmin(registry, caller, name);
  return { admin, adminKey: await registry.rotateAdminKey(name) };
}

// ---- shared rules ----

type Kind = 'agent' | 'cluster' | 'admin';

function notFound(kind: Kind, name: string): NotFoundError {
  return new NotFoundError(`no ${kind} named "${name}"; see kube-relay ${kind} list`);
}

/** A name that is no DNS label names nothing (and is never sent to the store). */
async function findIf<T>(name: string, find: (name: string) => Promise<T | undefined>): Promise<T | undefined> {
  return isDnsLabel(name) ? find(name) : undefined;
}

function orgForCreate(caller: Caller, requested: string | undefined, kind: Kind, alternative = ''): string {
  const confined = confinedOrg(caller);
  const org = requested ?? confined;
  if (org === undefined) throw new InvalidInputError(`${kind === 'cluster' ? 'a' : 'an'} ${kind} needs an org${alternative ? ` (${alternative})` : ''}`);
  if (confined !== undefined && org !== confined) throw new ForbiddenError(`an admin of org "${confined}" creates ${kind}s in org "${confined}" only, not in "${org}"`);
  return org;
}

async function refuseNameOfAnotherOrg(caller: Caller, kind: Kind, name: string, existing: { org?: string | undefined } | undefined): Promise<void> {
  if (existing && !mayManage(caller, existing.org)) {
    throw new AlreadyExistsError(`the ${kind} name "${name}" is taken (${kind} names are unique across the issuer): choose another name`);
  }
}

/**
 * The org a list is confined to: the one asked for (an all-orgs caller, or an org admin naming
 * its own), else the caller's own; undefined: every org. An org admin naming another org is 403.
 */
export function listedOrg(caller: Caller, requested: string | undefined): string | undefined {
  const confined = confinedOrg(caller);
  if (requested === undefined) return confined;
  if (!isDnsLabel(requested)) throw new InvalidInputError(`org "${requested.slice(0, 63)}" is not a DNS label`);
  if (confined !== undefined && requested !== confined) throw new ForbiddenError(`an admin of org "${confined}" lists org "${confined}" only, not "${requested}"`);
  return requested;
}

async function listPage<T extends { name: string }>(caller: Caller, page: PageRequest, list: (filter: ListFilter) => Promise<T[]>): Promise<Page<T>> {
  const org = listedOrg(caller, page.org);
  if (page.limit !== undefined && (!Number.isInteger(page.limit) || page.limit < 1)) throw new InvalidInputError(`limit must be a whole number from 1 to ${MAX_PAGE_SIZE}`);
  const limit = page.limit === undefined ? undefined : Math.min(page.limit, MAX_PAGE_SIZE);
  const after = page.continue === undefined ? undefined : decodeContinue(page.continue);
  const items = await list({ org, after, ...(limit === undefined ? {} : { limit: limit + 1 }) });
  if (limit === undefined || items.length <= limit) return { items };
  const shown = items.slice(0, limit);
  return { items: shown, continue: encodeContinue(shown[shown.length - 1]!.name) };
}

/** Opaque to callers: the last name of the page, so a page is stable while objects are added before it. */
function encodeContinue(lastName: string): string {
  return Buffer.from(`after:${lastName}`, 'utf8').toString('base64url');
}

function decodeContinue(token: string): string {
  const decoded = /^[A-Za-z0-9_-]+$/.test(token) ? Buffer.from(token, 'base64url').toString('utf8') : '';
  const name = decoded.startsWith('after:') ? decoded.slice('after:'.length) : '';
  if (!isDnsLabel(name)) throw new InvalidInputError('continue is not one this issuer gave: pass the continue of the previous page unchanged, or leave it out for the first page');
  return name;
}

// ---- tokens minted by the platform ----

/**
 * A 60-second token for `agentName` on `clusterName`, minted for the platform that runs the agent
 * (DESIGN §10): the caller must manage the agent and the cluster (another org's are "not found"),
 * and the token rule of `POST /v1/token` applies (a live agent, a live cluster of its org).
 */
export async function mintTokenForAgent<T>(
  registry: Registry,
  caller: Caller,
  input: { agent: string; cluster: string },
  mint: (agent: Agent, cluster: string) => Promise<T>,
): Promise<{ agent: Agent; cluster: Cluster; minted: T }> {
  const agent = await getAgent(registry, caller, input.agent);
  const cluster = await getCluster(registry, caller, input.cluster);
  const refusal = tokenRefusal(agent, cluster.name, cluster);
  if (refusal) throw new ForbiddenError(refusal.message);
  return { agent, cluster, minted: await mint(agent, cluster.name) };
}
