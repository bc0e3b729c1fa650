/**
 * The messages between a relay's primary and its workers over cluster IPC
 * (process.send, JSON). Admission is on every request's path, so it is
 * small and batched: what a worker has to say in one turn of its event loop
 * goes as one message, and the primary answers a batch with one.
 */
import type { Slots } from '../../request-stages/admission-limits.js';
import type { RefusalReason } from '../../request-stages/errors.js';
import type { RevocationEntry } from '../../request-stages/revocations.js';
import type { RateLimit } from '../../policy/policy.js';

/** One request's admission: its agent, the limits its token carries, and the slots it needs. */
export interface Take {
  id: number;
  user: string;
  slots: Slots;
  rate?: RateLimit;
  maxStreams?: number;
}

/** The primary's answer to a Take: granted, or the refusal the worker gives its client. */
export interface Took {
  id: number;
  refused?: { reason: RefusalReason; message: string; details: { policyRule?: string; retryAfterSeconds?: number } };
}

/** The key that tells the relay's messages from the others on the channel (prom-client's). */
export const KIND = 'kubeRelay';

export type WorkerMessage =
  | { [KIND]: 'limits'; takes: Take[]; releases: number[] }
  /** Sent once the worker's revocation list exists: the primary answers with every revocation it knows, then each new one. */
  | { [KIND]: 'subscribe' }
  | { [KIND]: 'readiness'; ready: boolean; waitingFor: string[] }
  /** The worker cannot serve and must not be restarted (a permission missing, the port taken). */
  | { [KIND]: 'fatal'; message: string };

export type PrimaryMessage = { [KIND]: 'took'; answers: Took[] } | { [KIND]: 'revoked'; entries: RevocationEntry[] };

export function isRelayMessage<T extends WorkerMessage | PrimaryMessage>(message: unknown): message is T {
  return typeof message === 'object' && message !== null && KIND in message;
}
