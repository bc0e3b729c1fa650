/**
 * Grants in the store (DESIGN §11), over the same SqlEngine as the rest of
 * the IssuerStore. A cluster-wide grant keeps namespace '' (not NULL), so
 * the unique key (cluster, grantee, role, namespace) holds for it too: SQL
 * treats NULLs as distinct.
 */
import type { Grant, GranteeKind } from '../../grants/grant.js';
import { UniqueViolationError, type SqlEngine } from './engine.js';
import { AlreadyExistsError } from './types.js';

export interface GrantFilter {
  org?: string | undefined;
  cluster?: string | undefined;
  grantee?: { kind: GranteeKind; name: string } | undefined;
  /** Ids after this one (paging in id order). */
  after?: string | undefined;
  limit?: number | undefined;
}

export interface GrantStore {
  /** AlreadyExistsError when a grant of the same cluster, grantee, role and namespace exists. */
  createGrant(grant: Omit<Grant, 'applied'>): Promise<void>;
  findGrant(id: string): Promise<Grant | undefined>;
  /** The grant of this cluster, grantee, role and namespace, if there is one. */
  findSameGrant(grant: Pick<Grant, 'cluster' | 'grantee' | 'role' | 'namespace'>): Promise<Grant | undefined>;
  listGrants(filter?: GrantFilter): Promise<Grant[]>;
  /** False when there was no such grant. */
  deleteGrant(id: string): Promise<boolean>;
  /** What the cluster's relay made of its grants; reports for grants of other clusters are ignored. */
  reportGrantStates(cluster: string, states: GrantStateReport[], at: Date): Promise<void>;
  /** The cluster's own grantable ClusterRoles, as its relay last found them (replacing the previous set). */
  setGrantableRoles(cluster: string, roles: string[], at: Date): Promise<void>;
  grantableRoles(cluster: string): Promise<{ name: string; reportedAt: Date }[]>;
}

export interface GrantStateReport {
  id: string;
  state: 'applied' | 'failed';
  reason?: string | undefined;
}

interface GrantRow {
  id: string;
  cluster: string;
  org: string;
  grantee_kind: string;
  grantee: string;
  role: string;
  namespace: string;
  expires_at: number | string | null;
  created_at: number | string;
  created_by: string;
  state: string;
  state_reason: string | null;
  state_at: number | string | null;
}

const millis = (value: number | string): Date => new Date(Number(value));

function toGrant(row: GrantRow): Grant {
  return {
    id: row.id,
    cluster: row.cluster,
    org: row.org,
    grantee: { kind: row.grantee_kind as GranteeKind, name: row.grantee },
    role: row.role,
    ...(row.namespace === '' ? {} : { namespace: row.namespace }),
    ...(row.expires_at === null ? {} : { expiresAt: millis(row.expires_at) }),
    createdAt: millis(row.created_at),
    createdBy: row.created_by,
    applied: {
      state: row.state as Grant['applied']['state'],
      ...(row.state_reason === null ? {} : { reason: row.state_reason }),
      ...(row.state_at === null ? {} : { at: millis(row.state_at) }),
    },
  };
}

export function grantStore(engine: SqlEngine): GrantStore {
  return {
    async createGrant(grant) {
      try {
        await engine.execute(
          `INSERT INTO grants (id, cluster, org, grantee_kind, grantee, role, namespace, expires_at, created_at, created_by, state)
           VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'pending')`,
          [grant.id, grant.cluster, grant.org, grant.grantee.kind, grant.grantee.name, grant.role, grant.namespace ?? '', grant.expiresAt?.getTime() ?? null, grant.createdAt.getTime(), grant.createdBy],
        );
      } catch (err) {
        if (err instanceof UniqueViolationError) throw new AlreadyExistsError(`a grant of role "${grant.role}" to ${grant.grantee.kind} "${grant.grantee.name}" on cluster "${grant.cluster}"${grant.namespace ? ` in namespace "${grant.namespace}"` : ''} already exists`);
        throw err;
      }
    },
    async findGrant(id) {
      const [row] = await engine.query<GrantRow>('SELECT * FROM grants WHERE id = ?', [id]);
      return row && toGrant(row);
    },
    async findSameGrant(grant) {
      const [row] = await engine.query<GrantRow>('SELECT * FROM grants WHERE cluster = ? AND grantee_kind = ? AND grantee = ? AND role = ? AND namespace = ?', [
        grant.cluster,
        grant.grantee.kind,
        grant.grantee.name,
        grant.role,
        grant.namespace ?? '',
      ]);
      return row && toGrant(row);
    },
    async listGrants(filter = {}) {
      const where: string[] = [];
      const params: unknown[] = [];
      const add = (clause: string, ...values: unknown[]) => {
        where.push(clause);
        params.push(...values);
      };
      if (filter.org !== undefined) add('org = ?', filter.org);
      if (filter.cluster !== undefined) add('cluster = ?', filter.cluster);
      if (filter.grantee !== undefined) add('grantee_kind = ? AND grantee = ?', filter.grantee.kind, filter.grantee.name);
      if (filter.after !== undefined) add('id > ?', filter.after);
      let sql = `SELECT * FROM grants${where.length > 0 ? ` WHERE ${where.join(' AND ')}` : ''} ORDER BY id`;
      if (filter.limit !== undefined) {
        sql += ' LIMIT ?';
        params.push(Math.max(0, Math.floor(filter.limit)));
      }
      return (await engine.query<GrantRow>(sql, params)).map(toGrant);
    },
    async deleteGrant(id) {
      return (await engine.execute('DELETE FROM grants WHERE id = ?', [id])) > 0;
    },
    async reportGrantStates(cluster, states, at) {
      if (states.length === 0) return;
      await engine.transaction(async (tx) => {
        for (const report of states) {
          await tx.execute('UPDATE grants SET state = ?, state_reason = ?, state_at = ? WHERE id = ? AND cluster = ?', [report.state, report.reason ?? null, at.getTime(), report.id, cluster]);
        }
      });
    },
    async setGrantableRoles(cluster, roles, at) {
      await engine.transaction(async (tx) => {
        await tx.execute('DELETE FROM grantable_roles WHERE cluster = ?', [cluster]);
        for (const role of new Set(roles)) await tx.execute('INSERT INTO grantable_roles (cluster, role, reported_at) VALUES (?, ?, ?)', [cluster, role, at.getTime()]);
      });
    },
    async grantableRoles(cluster) {
      const rows = await engine.query<{ role: string; reported_at: number | string }>('SELECT role, reported_at FROM grantable_roles WHERE cluster = ? ORDER BY role', [cluster]);
      return rows.map((row) => ({ name: row.role, reportedAt: millis(row.reported_at) }));
    },
  };
}
