/** Completed-request records as a relay would send them to the issuer (src/audit/record.ts AuditRecord). */
import { randomBytes, randomUUID } from 'node:crypto';
import type { AuditRecord } from '../../src/audit/record.js';
import { ORG } from './processes.js';

export const AGENTS = 50;

interface Invocation {
  kubectlSession: string;
  kubectlCommand: string;
  left: number;
  namespace: string;
  pod: string;
}

interface Agent {
  name: string;
  team: string;
  tokenId: string;
  sourceIp: string;
  invocation?: Invocation;
}

const KUBECTL = ['kubectl get', 'kubectl get', 'kubectl get', 'kubectl describe', 'kubectl logs', 'kubectl apply', 'kubectl rollout', 'kubectl exec', 'kubectl delete'];
const RESOURCES = ['pods', 'deployments', 'services', 'configmaps', 'events'];
const pick = <T>(items: readonly T[]): T => items[Math.floor(Math.random() * items.length)]!;
const between = (low: number, high: number) => low + Math.floor(Math.random() * (high - low + 1));

/** Completed-request records of one cluster's relay, in the order they end. */
export class RecordSource {
  private readonly agents: Agent[];
  private lastMs = 0;
  private sequence = 0;

  constructor(private readonly cluster: string) {
    this.agents = Array.from({ length: AGENTS }, (_, i) => ({
      name: `agent-${String(i).padStart(2, '0')}`,
      team: `team-${i % 7}`,
      tokenId: randomUUID(),
      sourceIp: `10.20.${i >> 4}.${(i % 16) + 10}`,
    }));
  }

  batch(size: number): AuditRecord[] {
    return Array.from({ length: size }, () => this.next());
  }

  next(): AuditRecord {
    const agent = pick(this.agents);
    if (!agent.invocation || agent.invocation.left === 0) {
      if (Math.random() < 0.05) agent.tokenId = randomUUID(); // a fresh token now and then
      agent.invocation = {
        kubectlSession: randomUUID(),
        kubectlCommand: pick(KUBECTL),
        left: between(5, 15),
        namespace: `${agent.team}-${pick(['dev', 'staging', 'prod'])}`,
        pod: `web-${randomBytes(4).toString('hex')}-${randomBytes(3).toString('hex').slice(0, 5)}`,
      };
    }
    const invocation = agent.invocation;
    invocation.left--;
    const endedMs = (this.lastMs = Math.max(this.lastMs, Date.now()));
    const first = invocation.left >= 3 && Math.random() < 0.2; // discovery
    const verbOf = (command: string): { method: string; verb: string; resource: string; subresource: string; name: string } => {
      if (first) return { method: 'GET', verb: 'get', resource: '', subresource: '', name: '' };
      switch (command) {
        case 'kubectl describe':
          return { method: 'GET', verb: Math.random() < 0.5 ? 'get' : 'list', resource: pick(['pods', 'events']), subresource: '', name: invocation.pod };
        case 'kubectl logs':
          return { method: 'GET', verb: 'get', resource: 'pods', subresource: 'log', name: invocation.pod };
        case 'kubectl apply':
          return Math.random() < 0.5 ? { method: 'GET', verb: 'get', resource: 'deployments', subresource: '', name: 'web' } : { method: 'PATCH', verb: 'patch', resource: 'deployments', subresource: '', name: 'web' };
        case 'kubectl rollout':
          return { method: 'GET', verb: Math.random() < 0.3 ? 'watch' : 'get', resource: 'deployments', subresource: Math.random() < 0.5 ? 'status' : '', name: 'web' };
        case 'kubectl exec':
          return invocation.left === 0 ? { method: 'POST', verb: 'exec', resource: 'pods', subresource: 'exec', name: invocation.pod } : { method: 'GET', verb: 'get', resource: 'pods', subresource: '', name: invocation.pod };
        case 'kubectl delete':
          return Math.random() < 0.5 ? { method: 'DELETE', verb: 'delete', resource: 'pods', subresource: '', name: invocation.pod } : { method: 'GET', verb: 'get', resource: 'pods', subresource: '', name: invocation.pod };
        default:
          return { method: 'GET', verb: 'list', resource: pick(RESOURCES), subresource: '', name: '' };
      }
    };
    const request = verbOf(invocation.kubectlCommand);
    const exec = request.verb === 'exec';
    const durationMs = exec ? between(800, 30_000) : request.verb === 'watch' ? between(1_000, 60_000) : between(2, 120);
    const roll = Math.random();
    const [status, decision, reason] =
      roll < 0.01 ? [429, 'denied-by-relay' as const, 'too-many-requests'] : roll < 0.03 ? [403, 'denied-by-cluster' as const, undefined] : [exec ? 101 : request.method === 'POST' ? 201 : 200, 'allowed' as const, undefined];
    const namespaced = request.resource !== '';
    const apiPath = !namespaced
      ? pick(['/api', '/apis', '/api/v1', '/apis/apps/v1'])
      : `/${request.resource === 'deployments' ? 'apis/apps/v1' : 'api/v1'}/namespaces/${invocation.namespace}/${request.resource}${request.name ? `/${request.name}` : ''}${request.subresource ? `/${request.subresource}` : ''}`;
    const query = exec ? `command=sh&command=-c&command=cat+%2Fetc%2Fhostname&container=main&stdin=true&stdout=true&tty=true` : request.verb === 'list' ? 'limit=500' : request.verb === 'watch' ? 'watch=true&resourceVersion=12345' : '';
    const record: AuditRecord = {
      time: new Date(endedMs).toISOString(),
      requestId: `${this.cluster}-${(++this.sequence).toString(36)}-${randomUUID()}`,
      stage: 'ResponseComplete',
      cluster: this.cluster,
      mode: 'direct',
      user: `agent:${agent.name}`,
      groups: [`${ORG}/${agent.team}`],
      tokenId: agent.tokenId,
      sourceIp: agent.sourceIp,
      userAgent: 'kubectl/v1.33.1 (linux/amd64) kubernetes/8adc0f0',
      method: request.method,
      path: apiPath,
      query,
      verb: request.verb,
      namespace: namespaced ? invocation.namespace : '',
      resource: request.resource,
      subresource: request.subresource,
      name: request.name,
      kubectlCommand: invocation.kubectlCommand,
      kubectlSession: invocation.kubectlSession,
      status,
      decision,
      durationMs,
      bytesIn: request.method === 'PATCH' ? between(800, 4_000) : 0,
      bytesOut: between(300, 40_000),
    };
    if (reason) record.reason = reason;
    if (exec) {
      record.command = ['sh', '-c', 'cat /etc/hostname'];
      record.container = 'main';
      record.protocol = 'v5.channel.k8s.io';
      record.startedAt = new Date(endedMs - durationMs).toISOString();
      record.endedAt = record.time;
    }
    return record;
  }
}
