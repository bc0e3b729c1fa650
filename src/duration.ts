const UNIT_MS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000, d: 86_400_000 };

/** Go-style durations ("90s", "1h30m", "250ms"; "0" alone), plus days ("30d"), in milliseconds, or undefined when malformed. */
export function parseDuration(value: string): number | undefined {
  if (value === '0') return 0;
  const parts = [...value.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h|d)/g)];
  if (parts.length === 0 || parts.map((p) => p[0]).join('') !== value) return undefined;
  return Math.round(parts.reduce((total, p) => total + Number(p[1]) * UNIT_MS[p[2]!]!, 0));
}

/** A duration for people, in the form parseDuration reads: "250ms", "45s", "3m12s", "1h5m", "2d3h". */
export function formatDuration(ms: number): string {
  if (ms < 1000) return `${Math.max(0, Math.round(ms))}ms`;
  let rest = Math.floor(ms / 1000) * 1000;
  let text = '';
  for (const unit of ['d', 'h', 'm', 's']) {
    const count = Math.floor(rest / UNIT_MS[unit]!);
    rest -= count * UNIT_MS[unit]!;
    if (count > 0) text += `${count}${unit}`;
  }
  return text;
}
