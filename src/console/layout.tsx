/**
 * The console's page frame and the pieces every page uses, rendered on the
 * server with Preact (preact-render-to-string escapes every text and
 * attribute value). No inline script or style anywhere: the CSP allows only
 * the issuer's own files under /ui/assets/.
 */
import type { Response } from 'express';
import type { ComponentChildren, VNode } from 'preact';
import { render } from 'preact-render-to-string';
import type { AdminCaller } from '../control/caller.js';
import { errorFor, type FormProblem } from './forms.js';

export interface PageContext {
  /** The signed-in admin; absent on the sign-in page. */
  caller?: AdminCaller | undefined;
  csrf: string;
  /** Which section of the navigation is current. */
  section?: Section | undefined;
}

export type Section = 'clusters' | 'agents' | 'grants' | 'sessions' | 'audit';

const SECTIONS: { section: Section; label: string }[] = [
  { section: 'clusters', label: 'Clusters' },
  { section: 'agents', label: 'Agents' },
  { section: 'grants', label: 'Grants' },
  { section: 'sessions', label: 'Sessions' },
  { section: 'audit', label: 'Audit' },
];

/** htmx's own settings: no style element of its own (CSP), no eval, no scripts from swapped HTML. */
const HTMX_CONFIG = JSON.stringify({ includeIndicatorStyles: false, allowEval: false, allowScriptTags: false, historyCacheSize: 0, refreshOnHistoryMiss: true });

export function sendPage(res: Response, ctx: PageContext, title: string, body: VNode, status = 200): void {
  const page = (
    <html lang="en">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="htmx-config" content={HTMX_CONFIG} />
        <title>{`${title} · kube-relay`}</title>
        <link rel="icon" href="/ui/assets/favicon.svg" type="image/svg+xml" />
        <link rel="stylesheet" href="/ui/assets/console.css" />
        <script src="/ui/assets/htmx.min.js" defer />
        <script src="/ui/assets/console.js" defer />
      </head>
      <body>
        <header class="top">
          <a class="brand" href="/ui/">kube-relay</a>
          {ctx.caller ? (
            <nav aria-label="Sections">
              <ul>
                {SECTIONS.map(({ section, label }) => (
                  <li>
                    <a href={`/ui/${section}`} aria-current={ctx.section === section ? 'page' : undefined}>
                      {label}
                    </a>
                  </li>
                ))}
              </ul>
            </nav>
          ) : null}
          {ctx.caller ? (
            <form class="who" method="post" action="/ui/sign-out">
              <span>
                {ctx.caller.name} · {ctx.caller.org === undefined ? 'all orgs' : `org ${ctx.caller.org}`}
              </span>
              <CsrfField token={ctx.csrf} />
              <button type="submit" class="link">
                Sign out
              </button>
            </form>
          ) : null}
        </header>
        <main id="main">
          <h1>{title}</h1>
          {body}
        </main>
      </body>
    </html>
  );
  res.status(status).type('html').send(`<!doctype html>${render(page)}`);
}

/** A part of a page sent alone, for htmx to swap in (live refresh). */
export function sendFragment(res: Response, fragment: VNode): void {
  res.status(200).type('html').send(render(fragment));
}

export function CsrfField(props: { token: string }): VNode {
  return <input type="hidden" name="_csrf" value={props.token} />;
}

/** A message for the whole page or form: `error` for refusals, `notice` for what was done. */
export function Banner(props: { kind: 'error' | 'notice'; children: ComponentChildren }): VNode {
  return (
    <p class={`banner ${props.kind}`} role={props.kind === 'error' ? 'alert' : 'status'}>
      {props.children}
    </p>
  );
}

/** The refusal as a banner over the form, unless it sits beside one of the form's `fields`. */
export function FormBanner(props: { problem: FormProblem | undefined; fields: readonly string[] }): VNode | null {
  const { problem } = props;
  return problem && !(problem.field && props.fields.includes(problem.field)) ? <Banner kind="error">{problem.message}</Banner> : null;
}

/** The form that revokes `name` once its name is typed (nameNotTyped checks it), saying first what revoking it does. */
export function RevokeByName(props: { action: string; cancelHref: string; name: string; csrf: string; problem?: FormProblem | undefined; children: ComponentChildren }): VNode {
  const { name, problem } = props;
  return (
    <form method="post" action={props.action} class="stacked confirm" novalidate>
      <CsrfField token={props.csrf} />
      <FormBanner problem={problem} fields={['confirm']} />
      <p>{props.children}</p>
      <Field label={`Type ${name} to confirm`} name="confirm" error={errorFor(problem, 'confirm')} required />
      <button type="submit" class="danger">
        Revoke {name}
      </button>{' '}
      <a href={props.cancelHref}>Cancel</a>
    </form>
  );
}

/** A labelled input with the API's sentence beside it when the value was refused. */
export function Field(props: { label: string; name: string; id?: string; value?: string | undefined; error?: string | undefined; hint?: string; type?: 'text' | 'password'; required?: boolean; placeholder?: string; autocomplete?: string }): VNode {
  const id = props.id ?? `field-${props.name}`;
  const attributes = {
    id,
    name: props.name,
    value: props.value ?? '',
    required: props.required,
    placeholder: props.placeholder,
    autocomplete: props.autocomplete ?? 'off',
    'aria-invalid': props.error ? ('true' as const) : undefined,
    'aria-describedby': describedBy(id, props),
  };
  return (
    <div class={props.error ? 'field invalid' : 'field'}>
      <label for={id}>{props.label}</label>
      {props.type === 'password' ? <input type="password" {...attributes} /> : <input type="text" {...attributes} />}
      <FieldNotes id={id} hint={props.hint} error={props.error} />
    </div>
  );
}

/** A secret shown once (a key), with a copy button; the page says it will not be shown again. */
export function SecretOnce(props: { id: string; label: string; value: string }): VNode {
  return (
    <div class="secret">
      <label for={props.id}>{props.label}</label>
      <div class="copyable">
        <input id={props.id} type="text" readonly value={props.value} class="mono" />
        <button type="button" data-copy={`#${props.id}`}>
          Copy
        </button>
      </div>
      <p class="warning">This is the only time it is shown. Store it now; if it is lost, rotate the key.</p>
    </div>
  );
}

/** A ready-to-paste command, with a copy button. */
export function Command(props: { id: string; label: string; text: string }): VNode {
  return (
    <div class="command">
      <div class="command-head">
        <span id={`${props.id}-label`}>{props.label}</span>
        <button type="button" data-copy={`#${props.id}`}>
          Copy
        </button>
      </div>
      <pre id={props.id} aria-labelledby={`${props.id}-label`} tabindex={0}>
        {props.text}
      </pre>
    </div>
  );
}

/** A time as people read it (UTC, to the second), the exact instant in `datetime`. */
export function Time(props: { at: string | Date | null | undefined }): VNode {
  if (props.at === null || props.at === undefined) return <span class="muted">–</span>;
  const iso = typeof props.at === 'string' ? props.at : props.at.toISOString();
  return <time datetime={iso}>{iso.replace('T', ' ').replace(/\.\d+Z$|Z$/, ' UTC')}</time>;
}

/** A button that posts a one-field form (rotate, remove), CSRF token included. */
export function PostButton(props: { action: string; csrf: string; label: string; danger?: boolean; fields?: Record<string, string> }): VNode {
  return (
    <form method="post" action={props.action} class="inline">
      <CsrfField token={props.csrf} />
      {Object.entries(props.fields ?? {}).map(([name, value]) => (
        <input type="hidden" name={name} value={value} />
      ))}
      <button type="submit" class={props.danger ? 'danger' : undefined}>
        {props.label}
      </button>
    </form>
  );
}

/** "Next page" for a list that pages with `continue`, keeping the list's other parameters. */
export function NextPage(props: { path: string; query: Record<string, string | undefined>; next: string | undefined }): VNode | null {
  if (!props.next) return null;
  const params = new URLSearchParams();
  for (const [name, value] of Object.entries(props.query)) if (value) params.set(name, value);
  params.set('continue', props.next);
  return (
    <p class="paging">
      <a href={`${props.path}?${params.toString()}`}>Next page →</a>
    </p>
  );
}

export function Empty(props: { children: ComponentChildren }): VNode {
  return <p class="empty">{props.children}</p>;
}

/** A labelled choice, with the API's sentence beside it when the value was refused. */
export function SelectField(props: { label: string; name: string; id?: string; options: { value: string; label: string }[]; value?: string | undefined; error?: string | undefined; hint?: string; required?: boolean }): VNode {
  const id = props.id ?? `field-${props.name}`;
  return (
    <div class={props.error ? 'field invalid' : 'field'}>
      <label for={id}>{props.label}</label>
      <select id={id} name={props.name} required={props.required} aria-invalid={props.error ? 'true' : undefined} aria-describedby={describedBy(id, props)}>
        {props.options.map((option) => (
          <option value={option.value} selected={option.value === props.value}>
            {option.label}
          </option>
        ))}
      </select>
      <FieldNotes id={id} hint={props.hint} error={props.error} />
    </div>
  );
}

/** A labelled multi-line input (one item per line), with the refusal beside it. */
export function TextAreaField(props: { label: string; name: string; value?: string | undefined; error?: string | undefined; hint?: string; rows?: number }): VNode {
  const id = `field-${props.name}`;
  return (
    <div class={props.error ? 'field invalid' : 'field'}>
      <label for={id}>{props.label}</label>
      <textarea id={id} name={props.name} rows={props.rows ?? 3} aria-invalid={props.error ? 'true' : undefined} aria-describedby={describedBy(id, props)}>
        {props.value ?? ''}
      </textarea>
      <FieldNotes id={id} hint={props.hint} error={props.error} />
    </div>
  );
}

/** A labelled checkbox (the label is clickable), with the refusal beside it when it had to be ticked. */
export function CheckboxField(props: { label: string; name: string; checked?: boolean; hint?: string; error?: string | undefined }): VNode {
  const id = `field-${props.name}`;
  return (
    <div class={props.error ? 'field checks invalid' : 'field checks'}>
      <label for={id}>
        <input type="checkbox" id={id} name={props.name} value="on" checked={props.checked} aria-invalid={props.error ? 'true' : undefined} aria-describedby={describedBy(id, props)} />
        {props.label}
      </label>
      <FieldNotes id={id} hint={props.hint} error={props.error} />
    </div>
  );
}

interface FieldNotesProps {
  hint?: string | undefined;
  error?: string | undefined;
}

/** What a control's aria-describedby names: its hint and its refusal, when it has them. */
function describedBy(id: string, notes: FieldNotesProps): string | undefined {
  return [notes.hint ? `${id}-hint` : '', notes.error ? `${id}-error` : ''].filter(Boolean).join(' ') || undefined;
}

/** A control's hint, and beside it the API's sentence when its value was refused. */
function FieldNotes(props: FieldNotesProps & { id: string }): VNode {
  return (
    <>
      {props.hint ? (
        <small id={`${props.id}-hint`} class="hint">
          {props.hint}
        </small>
      ) : null}
      {props.error ? (
        <small id={`${props.id}-error`} class="error" role="alert">
          {props.error}
        </small>
      ) : null}
    </>
  );
}
