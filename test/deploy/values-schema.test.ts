/**
 * values.schema.json refuses unknown keys (additionalProperties false), so
 * every key values.yaml has must be listed there, or the chart would refuse
 * its own defaults. helm lint checks this too, but only in the e2e suite.
 */
import { readFileSync } from 'node:fs';
import path from 'node:path';
import { describe, expect, it } from 'vitest';
import { parse } from 'yaml';

const CHART = path.resolve(import.meta.dirname, '..', '..', 'deploy', 'helm', 'kube-relay');

interface ObjectSchema {
  additionalProperties?: boolean;
  properties?: Record<string, ObjectSchema>;
}

/** Keys of `values` that a closed object of `schema` does not list, as dotted paths. */
function unlistedKeys(values: Record<string, unknown>, schema: ObjectSchema, at = ''): string[] {
  return Object.entries(values).flatMap(([key, value]) => {
    const keyPath = `${at}${key}`;
    const property = schema.properties?.[key];
    if (!property) return schema.additionalProperties === false ? [keyPath] : [];
    return typeof value === 'object' && value !== null && !Array.isArray(value) ? unlistedKeys(value as Record<string, unknown>, property, `${keyPath}.`) : [];
  });
}

describe('values.schema.json', () => {
  const schema = JSON.parse(readFileSync(path.join(CHART, 'values.schema.json'), 'utf8')) as ObjectSchema;
  const values = parse(readFileSync(path.join(CHART, 'values.yaml'), 'utf8')) as Record<string, unknown>;

  it('refuses unknown top-level values, and lists Helm\'s own global', () => {
    expect(schema.additionalProperties).toBe(false);
    expect(schema.properties).toHaveProperty('global');
  });

  it('lists every key of values.yaml', () => {
    expect(unlistedKeys(values, schema)).toEqual([]);
  });

  it('would notice a key values.yaml has and the schema does not list', () => {
    expect(unlistedKeys({ ...values, apiKey: 'x', tls: { secretName: 'x' } }, schema).sort()).toEqual(['apiKey', 'tls.secretName']);
  });
});
