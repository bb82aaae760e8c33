/**
 * The deb822 control-file syntax (deb822(5)) used by Release/InRelease, Packages indices and
 * apt's `.sources` files: stanzas separated by blank lines, "Field: value" lines, continuation
 * lines starting with a space or tab, '#' comment lines (only in .sources).
 */
export type Stanza = Map<string, string>;

export function parseDeb822(text: string, opts: { comments?: boolean } = {}): Stanza[] {
  const stanzas: Stanza[] = [];
  let cur: Stanza | undefined;
  let last: string | undefined;
  for (const line of text.split('\n')) {
    const l = line.replace(/\r$/, '');
    if (opts.comments && l.startsWith('#')) continue;
    if (l.trim() === '') {
      if (cur && cur.size) stanzas.push(cur);
      cur = undefined;
      last = undefined;
      continue;
    }
    if ((l.startsWith(' ') || l.startsWith('\t')) && cur && last) {
      cur.set(last, cur.get(last) + '\n' + l.trim());
      continue;
    }
    const colon = l.indexOf(':');
    if (colon <= 0) continue; // not a field: deb822 says ignore is unsafe, but apt skips it too
    cur ??= new Map();
    // Field names are case-insensitive (deb822(5)); keep the first spelling we meet.
    last = l.slice(0, colon).trim();
    const existing = [...cur.keys()].find((k) => k.toLowerCase() === last!.toLowerCase());
    if (existing) last = existing;
    cur.set(last, l.slice(colon + 1).trim());
  }
  if (cur && cur.size) stanzas.push(cur);
  return stanzas;
}

export function field(s: Stanza, name: string): string | undefined {
  const lower = name.toLowerCase();
  for (const [k, v] of s) if (k.toLowerCase() === lower) return v;
  return undefined;
}
