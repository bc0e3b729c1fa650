/**
 * Agent policies in the store (DESIGN §13), over the same SqlEngine as the
 * rest of the IssuerStore: one policy per agent or team, kept whole as the
 * JSON of a Policy (the issuer merges an agent's with its teams' when it
 * mints), and the token cuts `policy set --now` makes. A cut is an entry of
 * the revocation feed (revocationsSince in sql-store.ts): relays refuse the
 * agent's tokens issued at or before it and end its live streams, so its
 * next request needs a new token, which carries the new policy. One row per
 * agent, the latest cut kept, so the table never grows past the agents.
 */
import type { Policy } from '../../policy/policy.js';
import type { SqlEngine } from './engine.js';

export type PolicySubjectKind = 'agent' | 'team';

/** An agent by name, or a team as its group `ORG/TEAM`. */
export interface PolicySubject {
  kind: PolicySubjectKind;
  name: string;
}

export interface StoredPolicy {
  subject: PolicySubject;
  /** The agent's org, or the team's (its group's first half). */
  org: string;
  policy: Policy;
  updatedAt: Date;
  /** `operator` or `admin:NAME`. */
  updatedBy: string;
}

export interface PolicyStore {
  /** Writes the subject's whole policy, replacing the one it had. */
  setPolicy(stored: StoredPolicy): Promise<void>;
  findPolicy(subject: PolicySubject): Promise<StoredPolicy | undefined>;
  /** False when the subject had no policy. */
  deletePolicy(subject: PolicySubject): Promise<boolean>;
  /** The policies an agent's tokens carry, merged: its own (first, if it has one) and those of its teams' groups, in group order. */
  policiesFor(agentName: string, teamGroups: readonly string[]): Promise<StoredPolicy[]>;
  /** Refuses the tokens of each subject (`agent:NAME`) issued at or before `at`; a later cut of a subject replaces an earlier one, never the reverse. */
  cutTokens(subjects: readonly string[], at: Date): Promise<void>;
  /** When the tokens of `subject` (agent:NAME) were last cut, if ever. */
  tokenCutAt(subject: string): Promise<Date | undefined>;
}

interface PolicyRow {
  subject_kind: string;
  subject: string;
  org: string;
  policy: string;
  updated_at: number | string;
  updated_by: string;
}

const toStored = (row: PolicyRow): StoredPolicy => ({
  subject: { kind: row.subject_kind as PolicySubjectKind, name: row.subject },
  org: row.org,
  policy: JSON.parse(row.policy) as Policy,
  updatedAt: new Date(Number(row.updated_at)),
  updatedBy: row.updated_by,
});

export function policyStore(engine: SqlEngine): PolicyStore {
  return {
    async setPolicy(stored) {
      await engine.execute(
        `INSERT INTO policies (subject_kind, subject, org, policy, updated_at, updated_by) VALUES (?, ?, ?, ?, ?, ?)
         ON CONFLICT (subject_kind, subject) DO UPDATE SET org = excluded.org, policy = excluded.policy, updated_at = excluded.updated_at, updated_by = excluded.updated_by`,
        [stored.subject.kind, stored.subject.name, stored.org, JSON.stringify(stored.policy), stored.updatedAt.getTime(), stored.updatedBy],
      );
    },
    async findPolicy(subject) {
      const [row] = await engine.query<PolicyRow>('SELECT * FROM policies WHERE subject_kind = ? AND subject = ?', [subject.kind, subject.name]);
      return row && toStored(row);
    },
    async deletePolicy(subject) {
      return (await engine.execute('DELETE FROM policies WHERE subject_kind = ? AND subject = ?', [subject.kind, subject.name])) > 0;
    },
    async policiesFor(agentName, teamGroups) {
      const groups = [...new Set(teamGroups)];
      const teams = groups.length > 0 ? ` OR (subject_kind = 'team' AND subject IN (${groups.map(() => '?').join(', ')}))` : '';
      const rows = await engine.query<PolicyRow>(`SELECT * FROM policies WHERE (subject_kind = 'agent' AND subject = ?)${teams} ORDER BY subject_kind, subject`, [agentName, ...groups]);
      return rows.map(toStored);
    },
    async tokenCutAt(subject) {
      const [row] = await engine.query<{ cut_at: number | string }>('SELECT cut_at FROM token_cuts WHERE subject = ?', [subject]);
      return row === undefined ? undefined : new Date(Number(row.cut_at));
    },
    async cutTokens(subjects, at) {
      if (subjects.length === 0) return;
      await engine.transaction(async (tx) => {
        for (const subject of new Set(subjects)) {
          await tx.execute(
            `INSERT INTO token_cuts (subject, cut_at) VALUES (?, ?)
             ON CONFLICT (subject) DO UPDATE SET cut_at = CASE WHEN excluded.cut_at > token_cuts.cut_at THEN excluded.cut_at ELSE token_cuts.cut_at END`,
            [subject, at.getTime()],
          );
        }
      });
    },
  };
}
