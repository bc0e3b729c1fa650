/**
 * Start-up self-check (issue 5): before it serves, the relay asks the API
 * server whether its own identity may do what every forwarded request needs:
 * impersonate users, groups and the two user extras it sets. It asks with
 * SelfSubjectAccessReviews, as `kubectl auth can-i impersonate users` does,
 * and kube-apiserver's impersonation filter checks exactly these attributes
 * (extras: group authentication.k8s.io, resource `userextras`, the extra's
 * key as subresource). A missing permission stops the relay with a sentence
 * naming it and what grants it, instead of every agent meeting a 403.
 */
import { KubeApi, KubeApiError } from '../kube-api/client.js';
import { EXTRA_REQUEST_ID, EXTRA_TOKEN_ID } from './impersonate.js';
import type { Upstream } from './upstream.js';

export interface RequiredPermission {
  group: string;
  resource: string;
  subresource?: string;
}

export const REQUIRED_PERMISSIONS: RequiredPermission[] = [
  { group: '', resource: 'users' },
  { group: '', resource: 'groups' },
  { group: 'authentication.k8s.io', resource: 'userextras', subresource: EXTRA_TOKEN_ID },
  { group: 'authentication.k8s.io', resource: 'userextras', subresource: EXTRA_REQUEST_ID },
];

export class MissingPermissionError extends Error {}

/** The API server could not be asked (network, TLS, an unexpected answer): not a verdict on the permissions. */
export class SelfCheckUnavailableError extends Error {}


/**
 * Resolves when the relay's identity holds every permission in
 * REQUIRED_PERMISSIONS; rejects with MissingPermissionError naming the first
 * missing one, or SelfCheckUnavailableError when the API server cannot say.
 */
export async function checkImpersonationPermissions(upstream: Upstream): Promise<void> {
  for (const permission of REQUIRED_PERMISSIONS) {
    const review = await postJson(upstream, '/apis/authorization.k8s.io/v1/selfsubjectaccessreviews', {
      apiVersion: 'authorization.k8s.io/v1',
      kind: 'SelfSubjectAccessReview',
      spec: { resourceAttributes: { verb: 'impersonate', ...permission } },
    });
    const status = (review as { status?: { allowed?: unknown; reason?: unknown } }).status;
    if (status?.allowed === true) continue;
    const who = await whoAmI(upstream);
    throw new MissingPermissionError(missingSentence(permission, who, typeof status?.reason === 'string' ? status.reason : undefined));
  }
}

function missingSentence(permission: RequiredPermission, who: string | undefined, reason: string | undefined): string {
  const resource = permission.subresource ? `${permission.resource}/${permission.subresource}` : permission.resource;
  const rule = `{apiGroups: ["${permission.group}"], resources: ["${resource}"], verbs: ["impersonate"]}`;
  return (
    `the relay's identity${who ? ` (${who})` : ''} may not impersonate ${resource}${permission.group ? ` in ${permission.group}` : ''}, ` +
    `which every forwarded request needs${reason ? ` (the API server says: ${reason})` : ''}. ` +
    `Install the Helm chart with rbac.create=true (the default), or add the rule ${rule} to a ClusterRole bound to that identity.`
  );
}

/** The identity the API server sees (SelfSubjectReview, Kubernetes 1.28+); undefined where that is not served. */
async function whoAmI(upstream: Upstream): Promise<string | undefined> {
  try {
    const review = (await postJson(upstream, '/apis/authentication.k8s.io/v1/selfsubjectreviews', {
      apiVersion: 'authentication.k8s.io/v1',
      kind: 'SelfSubjectReview',
    })) as { status?: { userInfo?: { username?: unknown } } };
    const username = review.status?.userInfo?.username;
    return typeof username === 'string' ? username : undefined;
  } catch {
    return undefined;
  }
}

async function postJson(upstream: Upstream, path: string, body: object): Promise<unknown> {
  try {
    return await new KubeApi(upstream).request('POST', path, body);
  } catch (err) {
    if (err instanceof KubeApiError) throw new SelfCheckUnavailableError(`${upstream.description} answered ${path} with HTTP ${err.status}`);
    // KubeUnavailableError: its message names the API server, the request and the cause.
    throw new SelfCheckUnavailableError((err as Error).message);
  }
}
