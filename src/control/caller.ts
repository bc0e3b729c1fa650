/**
 * Who asks for an operation (DESIGN §10, STYLE 12): the operator at the
 * store (the local CLI, which holds the data directory or the store URL and
 * the pepper, so it could do anything anyway), or the holder of an admin
 * key, of one org or of all orgs.
 */

export type Caller = OperatorCaller | AdminCaller;

export interface OperatorCaller {
  kind: 'operator';
}

export interface AdminCaller {
  kind: 'admin';
  name: string;
  /** The one org this admin manages; absent for an all-orgs admin. */
  org?: string;
}

export const OPERATOR: OperatorCaller = { kind: 'operator' };

/** The org the caller is confined to, or undefined when it sees every org. */
export function confinedOrg(caller: Caller): string | undefined {
  return caller.kind === 'admin' ? caller.org : undefined;
}

/** Whether the caller may see and change objects of `org` (undefined: the all-orgs admins themselves). */
export function mayManage(caller: Caller, org: string | undefined): boolean {
  const confined = confinedOrg(caller);
  return confined === undefined || confined === org;
}

/** For messages and audit records; never a key. */
export function describeCaller(caller: Caller): string {
  if (caller.kind === 'operator') return 'the operator (local store)';
  return caller.org === undefined ? `all-orgs admin "${caller.name}"` : `admin "${caller.name}" of org "${caller.org}"`;
}

/** Who made a change, as grants and policies record it: `operator` or `admin:NAME`. */
export function actorOf(caller: Caller): string {
  return caller.kind === 'operator' ? 'operator' : `admin:${caller.name}`;
}
