/**
 * The machine list: name, image, state, memory, CPU use, uptime; a host overview; a create
 * form and per-row actions for roles that may use them. Rows follow the events stream: an
 * event naming a machine refetches that machine only, so the list is never stale and never polled.
 */
import { ApiError } from '../api.js';
import { onEvent } from '../events.js';
import { formatDuration, h, mount } from '../dom.js';
import { api, canOperate, type MachineAction, type MachineInfo, type Me, type Operation, type Usage } from '../model.js';

export function machinesView(root: HTMLElement, me: Me, showError: (e: unknown) => void): () => void {
  const machines = new Map<string, MachineInfo>();
  const tbody = h('tbody');
  const overview = h('div', { class: 'grid', 'aria-label': 'host overview' });
  let disposed = false;

  let usage: Usage | null = null;
  const renderOverview = () => {
    const byState = new Map<string, number>();
    for (const m of machines.values()) byState.set(m.state, (byState.get(m.state) ?? 0) + 1);
    const of = (used: number, limit: number | undefined, unit = '') => `${used}${unit}${limit !== undefined ? ` of ${limit}${unit}` : ''}`;
    const p = usage?.project;
    const d = usage?.daemon;
    mount(overview,
      h('div', { class: 'panel' }, h('div', { class: 'muted' }, 'Machines'), h('div', { class: 'stat', 'data-testid': 'machine-count' }, machines.size),
        h('div', {}, [...byState].map(([s, n]) => h('span', { class: `state ${s}`, style: 'margin-right:6px' }, `${s} ${n}`)))),
      h('div', { class: 'panel' }, h('div', { class: 'muted' }, `Project ${me.project}: running, memory, CPU against its limits`),
        p ? h('div', {}, `${of(p.used.machines, p.limits.maxMachines)} machines · ${of(p.used.memoryMiB, p.limits.maxMemoryMiB, ' MiB')} · ${of(p.used.cpuPercent, p.limits.maxCpuPercent, ' %')}`) : '–'),
      h('div', { class: 'panel' }, h('div', { class: 'muted' }, 'Host: everything the daemon runs, against its limits'),
        d ? h('div', {}, `${of(d.used.machines, d.limits.maxMachines)} machines · ${of(d.used.memoryMiB, d.limits.maxMemoryMiB, ' MiB')} · ${of(d.used.cpuPercent, d.limits.maxCpuPercent, ' %')}`) : '–'),
    );
  };

  const act = async (m: MachineInfo, action: MachineAction | 'delete', btn: HTMLButtonElement) => {
    if (action === 'delete' && !confirm(`Delete machine ${m.name}? Its disk is removed.`)) return;
    btn.disabled = true;
    try {
      if (action === 'delete') await api.remove(m.id);
      else await api.wait(await api.action(m.id, action, actionBody(m, action)));
      await refresh(m.id);
    } catch (err) {
      showError(err);
    } finally {
      btn.disabled = false;
    }
  };

  const row = (m: MachineInfo) => {
    const actions = canOperate(me.role)
      ? (['start', 'stop', 'pause', 'resume', 'snapshot', 'fork', 'delete'] as const).filter((a) => allowed(m.state, a)).map((a) => {
        const b: HTMLButtonElement = h('button', { class: a === 'delete' ? 'danger' : undefined, 'aria-label': `${a} ${m.name}`, onclick: () => act(m, a, b) }, a);
        return b;
      })
      : [];
    return h('tr', { dataset: { id: m.id } },
      h('td', { 'data-label': 'name' }, h('a', { href: `#/machines/${encodeURIComponent(m.id)}` }, m.name)),
      h('td', { 'data-label': 'image' }, m.image),
      h('td', { 'data-label': 'state' }, h('span', { class: `state ${m.state}`, title: m.reason ?? '' }, m.state)),
      h('td', { 'data-label': 'memory' }, `${m.memoryMiB} MiB`),
      h('td', { 'data-label': 'CPU' }, m.stats?.cpuPercent !== undefined ? `${m.stats.cpuPercent.toFixed(0)} %` : '–',
        m.resources?.cpuLimitPercent !== undefined && m.resources.cpuLimitPercent < 100 ? h('span', { class: 'muted' }, ` / ${m.resources.cpuLimitPercent} %`) : ''),
      h('td', { 'data-label': 'uptime' }, m.state === 'running' && m.startedAt ? formatDuration(Date.now() - Date.parse(m.startedAt)) : '–'),
      h('td', { class: 'actions' }, actions),
    );
  };

  const render = () => {
    const sorted = [...machines.values()].sort((a, b) => a.name.localeCompare(b.name));
    mount(tbody, sorted.length ? sorted.map(row) : h('tr', {}, h('td', { colspan: 7, class: 'muted' }, 'No machines yet.')));
    renderOverview();
  };

  const refresh = async (id?: string) => {
    try {
      if (id === undefined) {
        const list = await api.machines();
        machines.clear();
        for (const m of list) machines.set(m.id, m);
      } else {
        try {
          machines.set(id, await api.machine(id));
        } catch (err) {
          if (err instanceof ApiError && err.status === 404) machines.delete(id);
          else throw err;
        }
      }
      usage = await api.resources().catch(() => usage);
      if (!disposed) render();
    } catch (err) {
      showError(err);
    }
  };

  const createForm = () => {
    const name = h('input', { name: 'name', required: true, pattern: '[a-z0-9][a-z0-9-]{0,39}', placeholder: 'web-1', 'aria-label': 'name' });
    const image = h('select', { name: 'image', 'aria-label': 'image' });
    const memory = h('input', { name: 'memory', type: 'number', min: 64, max: 3584, value: 256, required: true });
    const cpu = h('input', { name: 'cpu', type: 'number', min: 1, max: 100, placeholder: '100' });
    const net = h('select', { name: 'network', 'aria-label': 'network' }, h('option', { value: '' }, 'none'));
    const fwd = h('input', { name: 'forwards', placeholder: '8080:80, 5353:53/udp' });
    const start = h('input', { type: 'checkbox', name: 'start', checked: true });
    const submit = h('button', { class: 'primary', type: 'submit' }, 'Create');
    void api.images().then((list) => mount(image, list.map((i) => h('option', { value: i.name, selected: i.default }, i.name)))).catch(showError);
    void api.networks().then((list) => list.forEach((n) => net.appendChild(h('option', { value: n.name }, n.name)))).catch(showError);
    return h('form', {
      class: 'panel row', 'aria-label': 'create a machine',
      onsubmit: async (e: Event) => {
        e.preventDefault();
        submit.disabled = true;
        try {
          const networks: string[] = net.value ? [net.value] : [];
          const forwards = parseForwards(fwd.value);
          if (forwards.length > 0) {
            // Forwards belong to a network: make one for this machine.
            const n = await api.createNetwork({ name: `${name.value}-net`.slice(0, 40), forwards });
            networks.push(n.name);
          }
          const res = await api.create({
            name: name.value, image: image.value, memoryMiB: Number(memory.value),
            ...(cpu.value ? { cpuLimitPercent: Number(cpu.value) } : {}),
            ...(networks.length ? { networks } : {}),
            start: start.checked,
          });
          if (res && typeof res === 'object' && 'status' in res && 'kind' in res) await api.wait(res as unknown as Operation);
          name.value = '';
          fwd.value = '';
          await refresh();
        } catch (err) {
          showError(err);
        } finally {
          submit.disabled = false;
        }
      },
    },
    h('label', {}, 'Name', name), h('label', {}, 'Image', image), h('label', {}, 'Memory (MiB)', memory),
    h('label', {}, 'CPU limit (%)', cpu), h('label', {}, 'Network', net), h('label', {}, 'Port forwards', fwd),
    h('label', {}, 'Start', start), submit);
  };

  mount(root,
    h('h1', {}, 'Machines'),
    overview,
    canOperate(me.role) && createForm(),
    h('table', { class: 'machines' },
      h('thead', {}, h('tr', {}, ['Name', 'Image', 'State', 'Memory', 'CPU', 'Uptime', ''].map((t) => h('th', { scope: 'col' }, t)))),
      tbody),
  );
  void refresh();

  const off = onEvent((ev) => {
    if (ev.type === 'resync') void refresh();
    else if (ev.type === 'lifecycle' && typeof ev.machine === 'string') void refresh(ev.machine);
  });
  return () => { disposed = true; off(); };
}

/** The actions that make sense in a state (the daemon decides; this only hides the pointless ones). */
export function allowed(state: string, action: string): boolean {
  switch (action) {
    case 'start': return state === 'stopped' || state === 'created';
    case 'stop': return state === 'running' || state === 'paused';
    case 'pause': return state === 'running';
    case 'resume': return state === 'paused';
    case 'snapshot': case 'fork': return state === 'running' || state === 'paused';
    case 'restore': return state !== 'running';
    case 'delete': return state !== 'running';
    default: return true;
  }
}

/** `8080:80, 5353:53/udp` → the API's forwards. Throws on a bad entry, saying which. */
export function parseForwards(text: string): { hostPort: number; guestPort: number; protocol: 'tcp' | 'udp' }[] {
  return text.split(',').map((t) => t.trim()).filter(Boolean).map((t) => {
    const m = /^(\d{1,5}):(\d{1,5})(?:\/(tcp|udp))?$/.exec(t);
    if (!m) throw new Error(`port forward '${t}': write HOST:GUEST or HOST:GUEST/udp`);
    return { hostPort: Number(m[1]), guestPort: Number(m[2]), protocol: (m[3] ?? 'tcp') as 'tcp' | 'udp' };
  });
}

/** The body an action needs: snapshots and forks get a name made from the machine's and the time. */
export function actionBody(m: MachineInfo, action: string): Record<string, unknown> {
  const stamp = new Date().toISOString().replace(/[^0-9]/g, '').slice(4, 14);
  if (action === 'snapshot') return { name: `${m.name}-${stamp}`.slice(-40).replace(/^-+/, '') };
  if (action === 'fork') return { name: `${m.name.slice(0, 24)}-fork-${stamp.slice(-6)}` };
  return {};
}
