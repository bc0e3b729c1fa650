/**
 * The web console (DESIGN §14), served by the issuer under /ui/ on its own
 * listener: server-rendered pages (Preact's renderToString) over the same
 * control operations as the admin API and the CLI (STYLE 12), a little
 * progressive enhancement (htmx refreshes live parts in place; a script of
 * our own copies keys), and every asset served from here, so it works with
 * no network beyond the issuer. Every page: a strict Content-Security-Policy
 * (scripts, styles and forms from this origin only, nothing inline), no
 * framing, no caching, no referrer.
 */
import { createRequire } from 'node:module';
import { fileURLToPath } from 'node:url';
import express, { type NextFunction, type Request, type Response } from 'express';
import helmet from 'helmet';
import { render } from 'preact-render-to-string';
import { toApiError } from '../admin-api/request.js';
import type { AuditSink } from '../audit/sink.js';
import type { AdminCaller } from '../control/caller.js';
import type { AuthFailureBrakes } from '../issuer/failure-limiter.js';
import type { Registry } from '../issuer/registry.js';
import type { Logger } from '../log.js';
import { addAgentPages } from './agents.js';
import { addAuditPages } from './audit.js';
import { type ConsoleAuthDeps, consoleSession, csrfToken, DEFAULT_IDLE_TIMEOUT_MS, formProtection, isCsrfError, signIn, signOut, type SignInReason } from './auth.js';
import { addClusterPages } from './clusters.js';
import { addGrantPages } from './grants.js';
import { changeRecorder, formText, queryText } from './forms.js';
import { Banner, CsrfField, Field, type PageContext, sendPage } from './layout.js';
import type { ConsolePageDeps } from './page-deps.js';
import { addSessionPages } from './sessions.js';

export interface ConsoleDeps {
  registry: Registry;
  /** The admin API's failure brakes: a wrong key costs the same budget on either door. */
  brakes: AuthFailureBrakes;
  log: Logger;
  audit?: AuditSink | undefined;
  now?: (() => Date) | undefined;
  publicUrl: string;
  issuerCaPem?: string | undefined;
  idleTimeoutMs?: number | undefined;
  maxGrantDurationMs?: number | undefined;
  onGrantsChanged?: ((cluster: string) => void) | undefined;
}

const ASSETS_DIR = fileURLToPath(new URL('./assets/', import.meta.url));
const HTMX_FILE = createRequire(import.meta.url).resolve('htmx.org/dist/htmx.min.js');

const SIGN_IN_REASONS: Record<SignInReason, string> = {
  expired: 'Your session ended after a while without activity; nothing you sent after that was done. Sign in again.',
  'key-changed': 'The admin key this session was opened with was rotated or revoked. Sign in with the current key.',
  'signed-out': 'You are signed out.',
  required: 'Sign in with an admin key to continue.',
};

export function consoleRouter(deps: ConsoleDeps): express.Router {
  const now = deps.now ?? (() => new Date());
  const auth: ConsoleAuthDeps = { registry: deps.registry, brakes: deps.brakes, log: deps.log, idleTimeoutMs: deps.idleTimeoutMs ?? DEFAULT_IDLE_TIMEOUT_MS, now };
  const pages: ConsolePageDeps = { registry: deps.registry, auth, record: changeRecorder(deps.audit, now), now, publicUrl: deps.publicUrl, issuerCaPem: deps.issuerCaPem, maxGrantDurationMs: deps.maxGrantDurationMs, onGrantsChanged: deps.onGrantsChanged };
  const router = express.Router();

  router.use(
    helmet({
      contentSecurityPolicy: {
        useDefaults: false,
        directives: {
          defaultSrc: ["'none'"],
          scriptSrc: ["'self'"],
          styleSrc: ["'self'"],
          imgSrc: ["'self'"],
          connectSrc: ["'self'"],
          formAction: ["'self'"],
          frameAncestors: ["'none'"],
          baseUri: ["'none'"],
        },
      },
      frameguard: { action: 'deny' },
      referrerPolicy: { policy: 'no-referrer' },
      // Not HSTS: with the data directory's own CA, a browser that pinned HSTS could never again be told to accept it.
      strictTransportSecurity: false,
    }),
  );

  // Assets hold no data: cached an hour. Everything else below is a page with data: never cached.
  router.get('/assets/htmx.min.js', (_req, res) => res.set('cache-control', 'public, max-age=3600').sendFile(HTMX_FILE));
  router.use('/assets', express.static(ASSETS_DIR, { maxAge: '1h', index: false, fallthrough: false }));
  router.use((_req, res, next) => {
    res.set('cache-control', 'no-store');
    next();
  });
  router.use(comeBackSameSite);
  router.use(consoleSession(auth));

  router.get('/', (_req, res) => res.redirect(303, '/ui/clusters'));
  router.get('/sign-in', (req, res) => {
    // Already signed in (a forged form from another site lands here, say): on to the page; that page checks the session whole.
    if (req.session.admin && auth.now().getTime() - (req.session.lastActiveMs ?? 0) <= auth.idleTimeoutMs) res.redirect(303, safeNext(queryText(req, 'next')));
    else signInPage(req, res);
  });
  router.post('/sign-in', ...formProtection, async (req, res) => {
    const result = await signIn(auth, req, formText(req, 'key'));
    if (!result.ok) {
      if (result.retryAfter) res.set('retry-after', result.retryAfter);
      signInPage(req, res, result.message, result.status);
      return;
    }
    res.redirect(303, safeNext(queryText(req, 'next')));
  });
  router.post('/sign-out', ...formProtection, (req, res) => signOut(req, res));

  addClusterPages(router, pages);
  addAgentPages(router, pages);
  addGrantPages(router, pages);
  addSessionPages(router, pages);
  addAuditPages(router, pages);

  router.use((req, res) => sendPage(res, errorContext(req, res), 'Not found', <Banner kind="error">There is no such page. Go to <a href="/ui/clusters">Clusters</a>.</Banner>, 404));
  router.use((err: unknown, req: Request, res: Response, next: NextFunction) => {
    if (isCsrfError(err) && req.path === '/sign-in') {
      signInPage(req, res, 'The sign-in form was open too long or came from another site. Sign in again.', 403);
      return;
    }
    if (isCsrfError(err)) {
      sendPage(res, errorContext(req, res), 'Form refused', <Banner kind="error">This form was not sent from a page of this console, or the page was open too long: nothing was done. Go back, reload the page and try again.</Banner>, 403);
      return;
    }
    const refusal = toApiError(err);
    if (refusal) {
      // A control operation's refusal on any page or live part: its status and its sentence.
      sendPage(res, errorContext(req, res), refusal.status === 404 ? 'Not found' : 'Refused', <Banner kind="error">{refusal.message}</Banner>, refusal.status);
      return;
    }
    deps.log.error('console request failed', { error: (err as Error).message, path: req.path });
    next(err);
  });
  return router;
}

function signInPage(req: Request, res: Response, problem?: string, status = 200): void {
  const reason = queryText(req, 'reason') as SignInReason | undefined;
  const next = queryText(req, 'next');
  const action = `/ui/sign-in${next ? `?next=${encodeURIComponent(safeNext(next))}` : ''}`;
  const body = (
    <form method="post" action={action} class="stacked sign-in" novalidate>
      <CsrfField token={csrfToken(req)} />
      {!problem && reason && SIGN_IN_REASONS[reason] ? <Banner kind="notice">{SIGN_IN_REASONS[reason]}</Banner> : null}
      <Field label="Admin key" name="key" type="password" error={problem} hint="An admin key (krl_admin_…) from kube-relay admin create." autocomplete="current-password" required />
      <button type="submit">Sign in</button>
    </form>
  );
  sendPage(res, { csrf: csrfToken(req) }, 'Sign in', body, status);
}

/**
 * A link from another site (chat, mail, a ticket) arrives without the SameSite=Strict cookie, so
 * the admin would look signed out, and the sign-in page's new session would replace theirs. Such
 * a navigation gets a page that loads the same address again from here (a same-site navigation,
 * which carries the cookie); nothing is read or changed, and no session is made.
 */
function comeBackSameSite(req: Request, res: Response, next: NextFunction): void {
  if (req.method !== 'GET' || req.get('sec-fetch-site') !== 'cross-site' || req.get('sec-fetch-mode') !== 'navigate') {
    next();
    return;
  }
  const page = (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta http-equiv="refresh" content="0" />
        <title>kube-relay</title>
      </head>
      <body>
        <p>
          <a href={req.originalUrl}>Continue to the kube-relay console</a>
        </p>
      </body>
    </html>
  );
  res.status(200).type('html').send(`<!doctype html>${render(page)}`);
}

/** A page that refuses: the signed-in admin's frame when there is one; no session made for a visitor who has none. */
function errorContext(req: Request, res: Response): PageContext {
  const caller = res.locals.caller as AdminCaller | undefined;
  return { caller, csrf: caller ? csrfToken(req) : '' };
}

/** Only a path of this console: an address elsewhere in `next` would make sign-in an open redirect. */
function safeNext(next: string | undefined): string {
  return next && /^\/ui\/[^/\\]/.test(next) && !next.includes('//') ? next : '/ui/clusters';
}
