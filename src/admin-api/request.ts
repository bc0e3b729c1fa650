/**
 * Reading admin API requests (DESIGN §10): list parameters, JSON bodies
 * whose every field is known and of its type, and the mapping of the
 * control operations' errors to `{"error", "message"}` answers.
 */
import type { Request } from 'express';
import * as ops from '../control/operations.js';
import { ApiError } from '../issuer/api-error.js';
import { ConflictError, ForbiddenError, InvalidInputError, NotFoundError } from '../issuer/registry.js';
import { AlreadyExistsError, StoreUnavailableError } from '../issuer/store.js';

/** Items per page when the caller does not say. */
const DEFAULT_PAGE_SIZE = 100;

/** The largest request body: a name, an org and a few teams need well under 1 KiB. */
export const BODY_LIMIT = 16 * 1024;

const PAGE_PARAMETERS = ['limit', 'continue', 'org'];

/**
 * `?limit=&continue=&org=` and the list's own `filters`, each at most once; anything else is
 * refused, naming it. `maxLimit`: the list's largest page, for the sentence (the operation checks it).
 */
export function pageRequest(req: Request, filters: string[] = [], maxLimit = ops.MAX_PAGE_SIZE): ops.PageRequest & { filters: Record<string, string | undefined> } {
  return pageQuery(req.query as Record<string, unknown>, filters, maxLimit);
}

/** pageRequest over a parsed query string (the web console's, without the empty fields its forms send). */
export function pageQuery(query: Record<string, unknown>, filters: string[] = [], maxLimit = ops.MAX_PAGE_SIZE): ops.PageRequest & { filters: Record<string, string | undefined> } {
  const known = [...PAGE_PARAMETERS, ...filters];
  for (const name of Object.keys(query)) {
    if (!known.includes(name)) throw new ApiError(422, 'invalid', `unknown query parameter "${name.slice(0, 40)}": this list takes ${known.join(', ')}`);
    if (typeof query[name] !== 'string') throw new ApiError(422, 'invalid', `query parameter "${name}" must be given once`);
  }
  const limitText = query.limit as string | undefined;
  if (limitText !== undefined && !/^\d{1,6}$/.test(limitText)) throw new ApiError(422, 'invalid', `limit must be a whole number from 1 to ${maxLimit}, not "${limitText.slice(0, 20)}"`);
  return {
    limit: limitText === undefined ? DEFAULT_PAGE_SIZE : Number(limitText),
    continue: query.continue as string | undefined,
    org: query.org as string | undefined,
    filters: Object.fromEntries(filters.map((name) => [name, query[name] as string | undefined])),
  };
}

/** `strings`: a non-empty list; `strings?`: a list, maybe empty; `object?`: a JSON object (its own fields are the route's to read). */
export type FieldRule = 'string' | 'string?' | 'strings' | 'strings?' | 'boolean?' | 'number?' | 'object?';

/**
 * The JSON object body of `endpoint`: every field known and of its type; `optionalBody`: an
 * empty body is `{}`. Refusals name the field.
 */
export function readBody(req: Request, endpoint: string, rules: Record<string, FieldRule>, optionalBody = false): Record<string, unknown> {
  const body: unknown = req.body;
  if (body === undefined && optionalBody) return {};
  if (typeof body !== 'object' || body === null || Array.isArray(body)) throw new ApiError(422, 'invalid', `the body of ${endpoint} must be a JSON object`);
  const fields = body as Record<string, unknown>;
  const known = Object.keys(rules);
  for (const name of Object.keys(fields)) {
    if (!known.includes(name)) throw new ApiError(422, 'invalid', `unknown field "${name.slice(0, 40)}": ${endpoint} takes ${known.length ? known.join(', ') : 'no fields'}`);
  }
  for (const [name, rule] of Object.entries(rules)) {
    const value = fields[name];
    if (value === undefined) {
      if (rule.endsWith('?')) continue;
      throw new ApiError(422, 'invalid', `field "${name}" is required by ${endpoint}`);
    }
    const shown = () => JSON.stringify(value).slice(0, 70);
    if (rule === 'boolean?') {
      if (typeof value !== 'boolean') throw new ApiError(422, 'invalid', `field "${name}" must be true or false, not ${shown()}`);
      continue;
    }
    if (rule === 'number?') {
      if (typeof value !== 'number') throw new ApiError(422, 'invalid', `field "${name}" must be a number, not ${shown()}`);
      continue;
    }
    if (rule === 'object?') {
      if (typeof value !== 'object' || value === null || Array.isArray(value)) throw new ApiError(422, 'invalid', `field "${name}" must be a JSON object, not ${shown()}`);
      continue;
    }
    const list = rule === 'strings' || rule === 'strings?';
    const values = list ? value : [value];
    if (!Array.isArray(values) || (rule === 'strings' && values.length === 0)) throw new ApiError(422, 'invalid', `field "${name}" must be a ${rule === 'strings' ? 'non-empty ' : ''}list of strings`);
    if (values.some((item) => typeof item !== 'string')) throw new ApiError(422, 'invalid', `field "${name}" must be ${list ? 'a list of strings' : 'a string'}, not ${shown()}`);
  }
  return fields;
}

export function toApiError(err: unknown): ApiError | undefined {
  if (err instanceof ApiError) return err;
  const bodyError = (err as { type?: string } | undefined)?.type;
  if (bodyError === 'entity.too.large') return new ApiError(422, 'invalid', `the body must be a JSON object of at most ${BODY_LIMIT / 1024} KiB`);
  if (bodyError === 'entity.parse.failed' || bodyError === 'encoding.unsupported') return new ApiError(422, 'invalid', 'the body is not valid JSON: send a JSON object');
  if (err instanceof NotFoundError) return new ApiError(404, 'not-found', err.message);
  if (err instanceof ForbiddenError) return new ApiError(403, 'forbidden', err.message);
  if (err instanceof ConflictError) return new ApiError(409, 'conflict', err.message);
  if (err instanceof AlreadyExistsError) return new ApiError(409, 'already-exists', err.message);
  if (err instanceof InvalidInputError) return new ApiError(422, 'invalid', err.message);
  if (err instanceof StoreUnavailableError) return new ApiError(503, 'store-unavailable', 'the issuer cannot reach its store right now; retry in a few seconds');
  return undefined;
}
