/**
 * Signing in to the web console (DESIGN §14): an admin key, checked by the
 * admin API's own authenticator (same failure brakes, same sentences), opens
 * a server-side session (express-session over the store; the cookie is
 * `__Host-`, HttpOnly, Secure, SameSite=Strict). Each request re-checks the
 * admin by the digest of the key it signed in with, so rotating or revoking
 * the key ends its console sessions at once; a session idle longer than the
 * idle timeout is ended, and what it asked for is not done. Every POST
 * carries csrf-sync's synchroniser token (the session holds it).
 */
import express, { type NextFunction, type Request, type RequestHandler, type Response } from 'express';
import session from 'express-session';
import { csrfSync } from 'csrf-sync';
import { authenticateAdmin } from '../admin-api/authenticate.js';
import type { AdminCaller } from '../control/caller.js';
import type { AuthFailureBrakes } from '../issuer/failure-limiter.js';
import type { Registry } from '../issuer/registry.js';
import type { Logger } from '../log.js';
import { ConsoleSessionStore } from './session-store.js';

declare module 'express-session' {
  interface SessionData {
    /** The signed-in admin's name, and the HMAC of the key it signed in with. */
    admin?: string;
    adminKeyDigest?: string;
    lastActiveMs?: number;
  }
}

export const COOKIE_NAME = '__Host-kube-relay-console';
/** A console session ends after this long without a page view or form (`--console-idle-timeout`). */
export const DEFAULT_IDLE_TIMEOUT_MS = 30 * 60_000;
/** However active, a session lasts at most this long: sign in again each working day. */
const ABSOLUTE_LIFETIME_MS = 12 * 3_600_000;

export interface ConsoleAuthDeps {
  registry: Registry;
  brakes: AuthFailureBrakes;
  log: Logger;
  idleTimeoutMs: number;
  now: () => Date;
}

/** Why a visitor is sent to the sign-in page, shown there. */
export type SignInReason = 'expired' | 'key-changed' | 'signed-out' | 'required';

const { csrfSynchronisedProtection, generateToken } = csrfSync({
  getTokenFromRequest: (req) => (req.body as Record<string, unknown> | undefined)?._csrf as string | undefined,
});

export function consoleSession(deps: ConsoleAuthDeps): RequestHandler {
  return session({
    name: COOKIE_NAME,
    secret: deps.registry.consoleCookieSecret(),
    store: new ConsoleSessionStore(deps.registry, () => deps.now().getTime()),
    resave: false,
    saveUninitialized: false,
    cookie: { httpOnly: true, secure: true, sameSite: 'strict', path: '/', maxAge: ABSOLUTE_LIFETIME_MS },
  });
}

/** Form bodies, then the CSRF check of every POST (the sign-in form's included). */
export const formProtection: RequestHandler[] = [express.urlencoded({ extended: false, limit: '16kb', parameterLimit: 100 }), csrfSynchronisedProtection];

/** The token a page's forms carry (made, and kept in the session, on first use). */
export function csrfToken(req: Request): string {
  return generateToken(req);
}

export function isCsrfError(err: unknown): boolean {
  return (err as { code?: unknown } | null)?.code === 'EBADCSRFTOKEN';
}

/**
 * Pages and forms behind sign-in: the caller in `res.locals.caller`. `live`: a part of a page
 * that refreshes itself (cluster status, open sessions), which does not count as activity.
 */
export function requireAdmin(deps: ConsoleAuthDeps, options: { live?: boolean } = {}): RequestHandler {
  return async (req: Request, res: Response, next: NextFunction) => {
    const data = req.session;
    const nowMs = deps.now().getTime();
    if (!data.admin || !data.adminKeyDigest) return sendToSignIn(req, res, 'required');
    if (nowMs - (data.lastActiveMs ?? 0) > deps.idleTimeoutMs) return endSession(req, res, 'expired');
    const admin = await deps.registry.adminForKeyDigest(data.adminKeyDigest);
    if (!admin || admin.revokedAt || admin.name !== data.admin) return endSession(req, res, 'key-changed');
    if (!options.live) data.lastActiveMs = nowMs;
    res.locals.caller = { kind: 'admin', name: admin.name, ...(admin.org === undefined ? {} : { org: admin.org }) } satisfies AdminCaller;
    next();
  };
}

export function callerOf(res: Response): AdminCaller {
  return res.locals.caller as AdminCaller;
}

/** Checks the key as the admin API does; on success, a new session (a new id: no fixation) holding the admin. */
export async function signIn(deps: ConsoleAuthDeps, req: Request, key: string): Promise<{ ok: true } | { ok: false; status: number; message: string; retryAfter?: string }> {
  const result = await authenticateAdmin({ registry: deps.registry, brakes: deps.brakes, log: deps.log }, { address: req.socket.remoteAddress ?? '', authorization: `Bearer ${key.trim()}` });
  if (!result.ok) {
    const message = result.status === 429 ? result.message : result.error === 'admin-revoked' ? 'This admin key was revoked. Ask an admin for a new one.' : 'That is not a valid admin key. Admin keys start with krl_admin_; kube-relay admin create makes one.';
    return { ok: false, status: result.status, message, ...(result.headers['retry-after'] ? { retryAfter: result.headers['retry-after'] } : {}) };
  }
  await new Promise<void>((resolve, reject) => req.session.regenerate((err) => (err ? reject(err) : resolve())));
  req.session.admin = result.caller.name;
  req.session.adminKeyDigest = deps.registry.adminKeyDigest(key.trim());
  req.session.lastActiveMs = deps.now().getTime();
  deps.log.info('console sign-in', { admin: result.caller.name, address: req.socket.remoteAddress ?? '' });
  return { ok: true };
}

export function signOut(req: Request, res: Response): void {
  endSession(req, res, 'signed-out');
}

function endSession(req: Request, res: Response, reason: SignInReason): void {
  req.session.destroy(() => {
    res.clearCookie(COOKIE_NAME, { path: '/', httpOnly: true, secure: true, sameSite: 'strict' });
    sendToSignIn(req, res, reason);
  });
}

/** A page is asked for again after sign-in; a form is not re-sent (it was not done). */
function sendToSignIn(req: Request, res: Response, reason: SignInReason): void {
  const next = req.method === 'GET' && !req.get('hx-request') ? `&next=${encodeURIComponent(req.originalUrl)}` : '';
  const target = `/ui/sign-in?reason=${reason}${next}`;
  // htmx follows HX-Redirect with a full page load: a refreshing part of a page must not swap in the sign-in form.
  if (req.get('hx-request')) res.status(401).set('hx-redirect', target).end();
  else res.redirect(303, target);
}
