/**
 * CPU shares: when the machines' CPU limits add up to more than the host can give
 * (`capacityPercent`, 100 per core set aside for machines), each machine gets a part of it in
 * proportion to its shares, never more than its own limit; what a capped machine cannot use
 * goes to the others (water-filling). When the limits fit, each machine keeps its limit.
 */
export interface ShareInput {
  id: string;
  limitPercent: number;
  shares: number;
}

export function effectiveLimits(machines: readonly ShareInput[], capacityPercent: number): Map<string, number> {
  const out = new Map<string, number>();
  const total = machines.reduce((s, m) => s + m.limitPercent, 0);
  if (total <= capacityPercent) {
    for (const m of machines) out.set(m.id, m.limitPercent);
    return out;
  }
  let left = capacityPercent;
  let open = [...machines];
  while (open.length > 0) {
    const shares = open.reduce((s, m) => s + m.shares, 0);
    const capped = open.filter((m) => (left * m.shares) / shares >= m.limitPercent);
    if (capped.length === 0) {
      for (const m of open) out.set(m.id, Math.max(1, Math.floor((left * m.shares) / shares)));
      break;
    }
    for (const m of capped) {
      out.set(m.id, m.limitPercent);
      left -= m.limitPercent;
    }
    open = open.filter((m) => !capped.includes(m));
  }
  return out;
}
