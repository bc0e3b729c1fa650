/**
 * What the console's forms share: reading a field, turning a control
 * operation's refusal into the API's sentence placed beside the field it is
 * about, and recording each change as the admin API does (`kind: "admin"`,
 * `via: "console"`).
 */
import type { Request, Response } from 'express';
import { toApiError } from '../admin-api/request.js';
import type { AdminAction, AdminAuditRecord } from '../audit/record.js';
import type { AuditSink } from '../audit/sink.js';
import { callerOf } from './auth.js';

export interface FormProblem {
  status: number;
  message: string;
  /** The form field the sentence is about; none: it is about the whole form. */
  field?: string;
}

/**
 * The refusal of a control operation as the admin API would answer it (same status, same
 * sentence). `fields`: each field with the words a sentence about it starts with (the
 * Registry's sentences name what they refuse: `cluster name "…" is not a DNS label`).
 * Anything that is not a refusal is thrown on, to the console's error page.
 */
export function formProblem(err: unknown, fields: Record<string, string[]> = {}): FormProblem {
  const refusal = toApiError(err);
  if (!refusal) throw err;
  const message = refusal.message;
  const lowered = message.toLowerCase();
  const field = Object.entries(fields).find(([, starts]) => starts.some((start) => lowered.startsWith(start.toLowerCase())))?.[0];
  return { status: refusal.status, message: capitalise(message), ...(field ? { field } : {}) };
}

/** The refusal's sentence when it is about `field`, to show beside it. */
export function errorFor(problem: FormProblem | undefined, field: string): string | undefined {
  return problem?.field === field ? problem.message : undefined;
}

/** A revocation is confirmed by typing the object's name into the form's `confirm` field; otherwise, the refusal beside it. */
export function nameNotTyped(req: Request, what: 'cluster' | 'agent', name: string): FormProblem | undefined {
  return formText(req, 'confirm') === name ? undefined : { status: 422, field: 'confirm', message: `Type the ${what}'s name, ${name}, to confirm.` };
}

/** A form field's value, trimmed; '' when absent. */
export function formText(req: Request, name: string): string {
  const value = (req.body as Record<string, unknown> | undefined)?.[name];
  return typeof value === 'string' ? value.trim() : '';
}

/** A query parameter given once, trimmed; undefined when absent or empty. */
export function queryText(req: Request, name: string): string | undefined {
  const value = req.query[name];
  return typeof value === 'string' && value.trim() !== '' ? value.trim() : undefined;
}

export type RecordChange = (req: Request, res: Response, action: AdminAction, object: AdminAuditRecord['object'], extra?: { cluster?: string }) => void;

export function changeRecorder(audit: AuditSink | undefined, now: () => Date): RecordChange {
  return (req, res, action, object, extra = {}) => {
    const admin = callerOf(res);
    audit?.admin({ time: now().toISOString(), kind: 'admin', admin: admin.name, adminOrg: admin.org ?? null, action, object, ...extra, via: 'console', sourceIp: req.socket.remoteAddress ?? null });
  };
}

function capitalise(sentence: string): string {
  const first = sentence.charAt(0);
  return `${first.toUpperCase()}${sentence.slice(1)}${/[.!?]$/.test(sentence) ? '' : '.'}`;
}
