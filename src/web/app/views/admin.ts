/**
 * For admins: the operations in flight and the audit log (newest first), both following
 * the events stream.
 */
import { onEvent } from '../events.js';
import { h, mount } from '../dom.js';
import { api } from '../model.js';

export function adminView(root: HTMLElement, showError: (e: unknown) => void): () => void {
  const ops = h('tbody');
  const audit = h('tbody');
  let disposed = false;

  const load = async () => {
    try {
      const [operations, entries] = await Promise.all([api.operations(), api.audit()]);
      if (disposed) return;
      mount(ops, operations.length
        ? operations.map((o) => h('tr', {}, h('td', { class: 'mono' }, o.id), h('td', {}, o.kind), h('td', {}, o.target ?? ''), h('td', {}, o.status), h('td', {}, o.error?.message ?? '')))
        : h('tr', {}, h('td', { colspan: 5, class: 'muted' }, 'No operations.')));
      mount(audit, [...entries].sort((a, b) => b.seq - a.seq).map((e) => h('tr', {},
        h('td', {}, e.seq), h('td', { class: 'mono' }, e.at ?? e.time ?? ''), h('td', {}, e.actor), h('td', {}, e.action), h('td', {}, e.target ?? ''), h('td', {}, e.result))));
    } catch (err) { showError(err); }
  };

  mount(root,
    h('h1', {}, 'Audit & operations'),
    h('h2', {}, 'Operations'),
    h('table', {}, h('thead', {}, h('tr', {}, ['Id', 'Kind', 'Target', 'Status', 'Error'].map((t) => h('th', { scope: 'col' }, t)))), ops),
    h('h2', {}, 'Audit log'),
    h('table', {}, h('thead', {}, h('tr', {}, ['#', 'Time', 'Who', 'What', 'Target', 'Result'].map((t) => h('th', { scope: 'col' }, t)))), audit),
  );
  void load();
  const off = onEvent((ev) => {
    if (ev.type === 'resync' || ev.type === 'audit' || ev.type === 'operation') void load();
  });
  return () => { disposed = true; off(); };
}
