/**
 * Which session each incoming audit record belongs to (DESIGN §12), for one
 * batch of one cluster's records, in the order the requests began:
 *
 * 1. a record naming a proxy run's session (`proxySession`) of the same
 *    agent and cluster belongs to it (a header naming anyone else's is
 *    ignored, so a client cannot write into another agent's session);
 * 2. a record whose `kubectlSession` is already in a session joins it;
 * 3. otherwise it joins the agent's latest activity session on the cluster
 *    if it began within SESSION_GAP_MS of that session's span, or starts a
 *    new one.
 *
 * The assigner keeps what it loaded and decided in memory, so a batch costs
 * one lookup for all its kubectl invocations and one for all its agents'
 * sessions, not one per record.
 */
import { randomBytes } from 'node:crypto';
import { MAX_SESSION_COMMANDS, type Session, type SessionCommand, SESSION_GAP_MS } from './session.js';

/** What the assigner needs to know of a record. */
export interface SessionInput {
  agent: string;
  startedMs: number;
  endedMs: number;
  decision: string;
  verb: string;
  kubectlSession?: string | undefined;
  kubectlCommand?: string | undefined;
  proxySession?: string | undefined;
  namespace: string;
  name: string;
  container?: string | undefined;
  command?: string[] | undefined;
  status: number;
}

export interface SessionLookups {
  /** These agents' activity sessions on this cluster whose last request ended at or after `sinceMs`. */
  activitySessions(agents: string[], sinceMs: number): Promise<Session[]>;
  /** The sessions holding these kubectl invocations' requests on this cluster (whoever's they are: the assigner checks the agent). */
  kubectlSessions(kubectlSessions: string[]): Promise<{ kubectlSession: string; session: Session }[]>;
  /** A session by id (any cluster, any agent: the assigner checks). */
  session(id: string): Promise<Session | undefined>;
}

/** `s-…` for an activity session, `p-…` for a proxy run. */
export function newSessionId(prefix: 's' | 'p' = 's'): string {
  return `${prefix}-${randomBytes(9).toString('base64url')}`;
}

interface Tracked {
  session: Session;
  isNew: boolean;
  changed: boolean;
  kubectlSessions: Set<string>;
}

export class SessionAssigner {
  private readonly tracked = new Map<string, Tracked>();
  /** agent → its activity sessions loaded or made in this batch. */
  private readonly activity = new Map<string, Tracked[]>();
  private readonly byKubectl = new Map<string, Tracked | null>();
  private readonly proxies = new Map<string, Tracked | null>();

  constructor(
    private readonly org: string,
    private readonly cluster: string,
    private readonly lookups: SessionLookups,
  ) {}

  /** Looks up, in one go each, the sessions of every kubectl invocation and of every agent the batch names. Call before assign(). */
  async prefetch(inputs: readonly SessionInput[]): Promise<void> {
    if (inputs.length === 0) return;
    const agents = [...new Set(inputs.map((input) => input.agent))];
    // Everything this batch could join: a session whose span comes within the gap of its earliest request.
    const sinceMs = Math.min(...inputs.map((input) => input.startedMs)) - SESSION_GAP_MS;
    for (const agent of agents) this.activity.set(agent, []);
    for (const session of await this.lookups.activitySessions(agents, sinceMs)) this.activity.get(session.agent)?.push(this.track(session, false));
    const wanted = new Map<string, SessionInput>();
    for (const input of inputs) if (input.kubectlSession !== undefined) wanted.set(this.perAgent(input.agent, input.kubectlSession), input);
    const found = await this.lookups.kubectlSessions([...new Set([...wanted.values()].map((input) => input.kubectlSession!))]);
    for (const key of wanted.keys()) this.byKubectl.set(key, null);
    for (const { kubectlSession, session } of found) {
      const key = this.perAgent(session.agent, kubectlSession);
      if (wanted.has(key)) this.byKubectl.set(key, this.track(session, false));
    }
  }

  /** The id of the session `input` belongs to (making one if need be), with the session's span stretched over it. */
  async assign(input: SessionInput): Promise<string> {
    const tracked = (await this.proxyRun(input)) ?? this.kubectlInvocation(input) ?? this.activitySession(input);
    const session = tracked.session;
    if (input.startedMs < session.startedAt.getTime()) session.startedAt = new Date(input.startedMs);
    if (input.endedMs > session.lastActivityAt.getTime()) session.lastActivityAt = new Date(input.endedMs);
    if (input.kubectlSession !== undefined) {
      this.byKubectl.set(this.perAgent(input.agent, input.kubectlSession), tracked);
    }
    tracked.changed = true;
    return session.id;
  }

  /** Counts a record that was stored (not a duplicate) into its session: requests, refusals, commands. */
  count(sessionId: string, input: SessionInput): void {
    const tracked = this.tracked.get(sessionId);
    if (!tracked) return;
    const session = tracked.session;
    session.requests++;
    if (input.decision !== 'allowed') session.refusals++;
    const time = new Date(input.startedMs).toISOString();
    if (input.kubectlSession !== undefined && !tracked.kubectlSessions.has(input.kubectlSession)) {
      tracked.kubectlSessions.add(input.kubectlSession);
      addCommand(session, { time, kind: 'kubectl', command: input.kubectlCommand ?? '', kubectlSession: input.kubectlSession });
    }
    if (input.verb === 'exec' || input.verb === 'attach') {
      addCommand(session, {
        time,
        kind: input.verb,
        command: input.command?.join(' ') ?? '',
        namespace: input.namespace,
        pod: input.name,
        ...(input.container === undefined ? {} : { container: input.container }),
        status: input.status,
        ...(input.kubectlSession === undefined ? {} : { kubectlSession: input.kubectlSession }),
      });
    }
  }

  /** Sessions to write: the new ones that hold a stored record, and the changed ones. */
  sessionsToSave(): Session[] {
    return [...this.tracked.values()].filter((t) => t.changed && (!t.isNew || t.session.requests > 0)).map((t) => t.session);
  }

  /** Sessions are looked up per agent: another agent naming the same id never shares what one agent found. */
  private perAgent(agent: string, id: string): string {
    return `${agent}\u0000${id}`;
  }

  private track(session: Session, isNew: boolean): Tracked {
    const existing = this.tracked.get(session.id);
    if (existing) return existing;
    const tracked: Tracked = { session, isNew, changed: false, kubectlSessions: new Set(session.commands.flatMap((c) => (c.kubectlSession ? [c.kubectlSession] : []))) };
    this.tracked.set(session.id, tracked);
    return tracked;
  }

  private async proxyRun(input: SessionInput): Promise<Tracked | undefined> {
    if (input.proxySession === undefined) return undefined;
    const key = this.perAgent(input.agent, input.proxySession);
    let tracked = this.proxies.get(key);
    if (tracked === undefined) {
      const session = this.tracked.get(input.proxySession)?.session ?? (await this.lookups.session(input.proxySession));
      const ours = session && session.kind === 'proxy' && session.org === this.org && session.cluster === this.cluster && session.agent === input.agent;
      tracked = ours ? this.track(session, false) : null;
      this.proxies.set(key, tracked);
    }
    return tracked ?? undefined;
  }

  private kubectlInvocation(input: SessionInput): Tracked | undefined {
    if (input.kubectlSession === undefined) return undefined;
    const key = this.perAgent(input.agent, input.kubectlSession);
    return this.byKubectl.get(key) ?? undefined;
  }

  private activitySession(input: SessionInput): Tracked {
    let candidates = this.activity.get(input.agent);
    if (candidates === undefined) this.activity.set(input.agent, (candidates = []));
    const joinable = candidates
      .filter((t) => input.startedMs >= t.session.startedAt.getTime() - SESSION_GAP_MS && input.startedMs <= t.session.lastActivityAt.getTime() + SESSION_GAP_MS)
      // A session ended by the agent's revocation takes nothing begun after it: the refusals that follow are a session of their own.
      .filter((t) => t.session.endedAt === undefined || input.startedMs <= t.session.endedAt.getTime())
      .sort((a, b) => b.session.startedAt.getTime() - a.session.startedAt.getTime())[0];
    if (joinable) return joinable;
    const session: Session = {
      id: newSessionId(),
      org: this.org,
      cluster: this.cluster,
      agent: input.agent,
      kind: 'activity',
      startedAt: new Date(input.startedMs),
      lastActivityAt: new Date(input.endedMs),
      requests: 0,
      refusals: 0,
      commands: [],
      commandsOmitted: 0,
    };
    const tracked = this.track(session, true);
    candidates.push(tracked);
    return tracked;
  }
}

/** Inserts `command` in time order; past MAX_SESSION_COMMANDS it is counted instead. */
function addCommand(session: Session, command: SessionCommand): void {
  if (session.commands.length >= MAX_SESSION_COMMANDS) {
    session.commandsOmitted++;
    return;
  }
  let at = session.commands.length;
  while (at > 0 && session.commands[at - 1]!.time > command.time) at--;
  session.commands.splice(at, 0, command);
}
