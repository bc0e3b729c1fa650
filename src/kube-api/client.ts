/**
 * The relay's own calls to its API server (not forwarded agent traffic):
 * JSON requests with the relay's credential from its Upstream, answered as
 * the status and the decoded body. A few verbs on a few resources (RBAC
 * bindings, ClusterRoles, Leases) do not need a generated client; what they
 * need from one is here: the credential, the CA, a deadline, and the
 * Kubernetes Status of a refusal.
 */
import http from 'node:http';
import https from 'node:https';
import type { Upstream } from '../relay/upstream.js';

export interface KubeAnswer<T = unknown> {
  status: number;
  body: T;
}

/** A refusal of the API server, with its Status reason (AlreadyExists, Conflict, NotFound, Forbidden…) and message. */
export class KubeApiError extends Error {
  constructor(
    readonly status: number,
    readonly reason: string,
    message: string,
  ) {
    super(message);
  }
}

/** The API server could not be asked: network, TLS, deadline, or an answer that is not JSON. */
export class KubeUnavailableError extends Error {}

const REQUEST_TIMEOUT_MS = 10_000;
const MAX_ANSWER_BYTES = 16 * 1024 * 1024;

export class KubeApi {
  constructor(private readonly upstream: Upstream) {}

  get description(): string {
    return this.upstream.description;
  }

  /** The answer of a 2xx; a KubeApiError for any other status. */
  async request<T = unknown>(method: string, path: string, body?: object): Promise<T> {
    const answer = await this.send<T>(method, path, body);
    if (answer.status >= 200 && answer.status < 300) return answer.body;
    const refusal = answer.body as { reason?: unknown; message?: unknown };
    throw new KubeApiError(answer.status, typeof refusal?.reason === 'string' ? refusal.reason : `HTTP ${answer.status}`, typeof refusal?.message === 'string' ? refusal.message : `${method} ${path} answered HTTP ${answer.status}`);
  }

  /** The object, or undefined when the API server says it does not exist. */
  async find<T = unknown>(path: string): Promise<T | undefined> {
    try {
      return await this.request<T>('GET', path);
    } catch (err) {
      if (err instanceof KubeApiError && err.status === 404) return undefined;
      throw err;
    }
  }

  private send<T>(method: string, path: string, body: object | undefined): Promise<KubeAnswer<T>> {
    const url = new URL(`${this.upstream.server.pathname.replace(/\/+$/, '')}${path}`, this.upstream.server);
    const payload = body === undefined ? undefined : JSON.stringify(body);
    const authorization = this.upstream.authorization();
    const transport = url.protocol === 'https:' ? https : http;
    return new Promise((resolve, reject) => {
      const req = transport.request(url, {
        method,
        timeout: REQUEST_TIMEOUT_MS,
        agent: false,
        headers: {
          accept: 'application/json',
          ...(payload === undefined ? {} : { 'content-type': 'application/json', 'content-length': Buffer.byteLength(payload) }),
          ...(authorization ? { authorization } : {}),
        },
        ...this.upstream.tls,
      });
      req.on('timeout', () => req.destroy(new Error(`no answer within ${REQUEST_TIMEOUT_MS} ms`)));
      req.on('error', (err) => reject(new KubeUnavailableError(`cannot reach ${this.upstream.description} (${method} ${url.pathname}): ${err.message}`)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (chunk: Buffer) => {
          size += chunk.length;
          if (size > MAX_ANSWER_BYTES) req.destroy(new Error(`answer larger than ${MAX_ANSWER_BYTES} bytes`));
          else chunks.push(chunk);
        });
        res.on('error', (err) => reject(new KubeUnavailableError(`${this.upstream.description} broke off ${method} ${url.pathname}: ${err.message}`)));
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          try {
            resolve({ status: res.statusCode ?? 0, body: (text === '' ? {} : JSON.parse(text)) as T });
          } catch {
            reject(new KubeUnavailableError(`${this.upstream.description} answered ${method} ${url.pathname} with HTTP ${res.statusCode} and a body that is not JSON`));
          }
        });
      });
      req.end(payload);
    });
  }
}
