/**
 * One machine: its state and actions, the console terminal (serial, scrollback replayed by
 * the daemon on reconnect), a shell on a pty through the guest agent, live charts, and a
 * file browser with upload and download.
 */
import { ApiError } from '../api.js';
import { onEvent } from '../events.js';
import { formatBytes, formatDuration, h, mount } from '../dom.js';
import { api, canOperate, type FileEntry, type MachineAction, type MachineInfo, type Me } from '../model.js';
import { RollingChart, rate } from '../charts.js';
import { openTerminal, type TerminalHandle } from '../terminal.js';
import { actionBody, allowed } from './machines.js';

type Tab = 'console' | 'shell' | 'metrics' | 'files';
const SAMPLE_MS = 2000;

export function machineView(root: HTMLElement, id: string, me: Me, showError: (e: unknown) => void): () => void {
  let machine: MachineInfo | null = null;
  let tab: Tab = 'console';
  let term: TerminalHandle | null = null;
  let sampler: ReturnType<typeof setInterval> | undefined;
  let disposed = false;
  const header = h('div', { class: 'panel' });
  const tabs = h('div', { class: 'tabs', role: 'tablist' });
  const body = h('section', { role: 'tabpanel' });
  const status = h('span', { class: 'muted', role: 'status' });

  const renderHeader = () => {
    if (!machine) return;
    const m = machine;
    const actions = canOperate(me.role)
      ? (['start', 'stop', 'pause', 'resume', 'snapshot', 'restore', 'fork'] as MachineAction[]).filter((a) => allowed(m.state, a)).map((a) => {
        const b: HTMLButtonElement = h('button', {
          onclick: async () => {
            b.disabled = true;
            try {
              let body = actionBody(m, a);
              if (a === 'restore') {
                const snaps = (await api.snapshots()).filter((s) => s.machine === undefined || s.machine === m.id || s.machine === m.name);
                if (snaps.length === 0) { status.textContent = 'no snapshot of this machine to restore'; return; }
                body = { snapshot: snaps[snaps.length - 1]!.name };
              }
              const done = await api.wait(await api.action(m.id, a, body));
              if (a === 'fork' || a === 'snapshot' || a === 'restore') status.textContent = `${a}: ${String((body as { name?: string; snapshot?: string }).name ?? (body as { snapshot?: string }).snapshot)} (${done.status})`;
              await load();
            } catch (err) { showError(err); } finally { b.disabled = false; }
          },
        }, a);
        return b;
      })
      : [];
    mount(header,
      h('h1', {}, m.name, ' ', h('span', { class: `state ${m.state}` }, m.state)),
      h('div', { class: 'muted' }, `${m.image} · ${m.memoryMiB} MiB`, m.resources?.cpuLimitPercent !== undefined && m.resources.cpuLimitPercent < 100 ? ` · CPU limit ${m.resources.cpuLimitPercent} %` : '',
        m.state === 'running' && m.startedAt ? ` · up ${formatDuration(Date.now() - Date.parse(m.startedAt))}` : '',
        m.reason ? ` · ${m.reason}` : ''),
      h('div', { class: 'row', style: 'margin-top:8px' }, actions, status),
    );
  };

  const load = async () => {
    try {
      machine = await api.machine(id);
      if (!disposed) renderHeader();
    } catch (err) {
      if (err instanceof ApiError && err.status === 404) { mount(root, h('p', {}, 'No such machine. ', h('a', { href: '#/machines' }, 'Back to the list.'))); return; }
      showError(err);
    }
  };

  const closeTab = () => {
    term?.dispose();
    term = null;
    if (sampler) clearInterval(sampler);
    sampler = undefined;
  };

  const showTab = (t: Tab) => {
    closeTab();
    tab = t;
    for (const b of tabs.querySelectorAll('button')) b.setAttribute('aria-selected', String(b.dataset.tab === t));
    const line = h('div', { class: 'muted', role: 'status' });
    if (t === 'console' || t === 'shell') {
      const el = h('div', { class: 'term', 'data-testid': `${t}-terminal` });
      mount(body, el, line);
      const path = t === 'console' ? `/v1/machines/${encodeURIComponent(id)}/console` : `/v1/machines/${encodeURIComponent(id)}/pty`;
      term = openTerminal(el, { path, sendResize: t === 'shell', onStatus: (s) => { line.textContent = s; } });
      term.term.focus();
    } else if (t === 'metrics') {
      showMetrics();
    } else {
      void showFiles('/root');
    }
  };

  const showMetrics = () => {
    const mips = new RollingChart('Guest MIPS', [{ label: 'MIPS', color: '#5fb3f9' }], '');
    const cpu = new RollingChart('CPU', [{ label: 'CPU %', color: '#5ec27a' }], '%');
    const mem = new RollingChart('Guest memory (MiB, less what the balloon took)', [{ label: 'MiB', color: '#e6b450' }], '');
    const disk = new RollingChart('Disk', [{ label: 'read B/s', color: '#5fb3f9' }, { label: 'write B/s', color: '#f07178' }], '');
    const net = new RollingChart('Network', [{ label: 'rx B/s', color: '#5ec27a' }, { label: 'tx B/s', color: '#e6b450' }], '');
    mount(body, h('div', { class: 'grid charts' }, mips.el, cpu.el, mem.el, disk.el, net.el));
    let prev: { t: number; s: NonNullable<MachineInfo['stats']> } | null = null;
    const sample = async () => {
      try {
        const m = await api.machine(id);
        const s = m.stats ?? {};
        const t = Date.now();
        mips.push(t, s.mips ?? 0);
        cpu.push(t, s.cpuPercent ?? (prev ? rate(prev.s.cpuSeconds, s.cpuSeconds, t - prev.t) * 100 : 0));
        mem.push(t, s.memoryRssBytes !== undefined ? s.memoryRssBytes / 1048576 : m.memoryMiB - (m.resources?.balloonMiB ?? 0));
        const dt = prev ? t - prev.t : 0;
        disk.push(t, rate(prev?.s.blkBytesRead, s.blkBytesRead, dt), rate(prev?.s.blkBytesWritten, s.blkBytesWritten, dt));
        net.push(t, rate(prev?.s.netRxBytes, s.netRxBytes, dt), rate(prev?.s.netTxBytes, s.netTxBytes, dt));
        prev = { t, s };
      } catch (err) { showError(err); }
    };
    void sample();
    sampler = setInterval(sample, SAMPLE_MS);
  };

  const showFiles = async (dir: string) => {
    const list = h('tbody');
    const pathLine = h('div', { class: 'mono' }, dir);
    const upload = h('input', { type: 'file', 'aria-label': 'upload a file', multiple: true });
    const uploadBtn = h('button', {
      onclick: async () => {
        for (const f of upload.files ?? []) {
          try {
            await api.writeFile(id, joinPath(dir, f.name), new Uint8Array(await f.arrayBuffer()));
          } catch (err) { showError(err); return; }
        }
        void showFiles(dir);
      },
    }, 'Upload');
    mount(body,
      h('div', { class: 'panel' },
        h('div', { class: 'row' }, pathLine, dir !== '/' && h('button', { onclick: () => showFiles(parentPath(dir)) }, 'Up')),
        canOperate(me.role) && h('div', { class: 'row', style: 'margin:8px 0' }, upload, uploadBtn),
        h('table', {}, h('thead', {}, h('tr', {}, h('th', {}, 'Name'), h('th', {}, 'Size'), h('th', {}, ''))), list)));
    let entries: FileEntry[];
    try {
      entries = await api.listDir(id, dir);
    } catch (err) { showError(err); return; }
    entries.sort((a, b) => (a.type === 'dir' ? 0 : 1) - (b.type === 'dir' ? 0 : 1) || a.name.localeCompare(b.name));
    mount(list, entries.map((e) => h('tr', {},
      h('td', {}, e.type === 'dir'
        ? h('a', { href: '#', onclick: (ev: Event) => { ev.preventDefault(); void showFiles(joinPath(dir, e.name)); } }, `${e.name}/`)
        : e.name),
      h('td', {}, e.type === 'dir' ? '' : formatBytes(e.size)),
      h('td', {}, e.type === 'file' && h('button', {
        onclick: async () => {
          try {
            const data = await api.readFile(id, joinPath(dir, e.name));
            const a = h('a', { href: URL.createObjectURL(new Blob([data])), download: e.name });
            a.click();
            setTimeout(() => URL.revokeObjectURL(a.href), 10_000);
          } catch (err) { showError(err); }
        },
      }, 'Download')))));
  };

  mount(tabs, (['console', 'shell', 'metrics', 'files'] as Tab[])
    .filter((t) => t !== 'shell' || canOperate(me.role))
    .map((t) => h('button', { role: 'tab', dataset: { tab: t }, 'aria-selected': 'false', onclick: () => showTab(t) }, t)));
  mount(root, h('p', {}, h('a', { href: '#/machines' }, '← Machines')), header, tabs, body);
  void load().then(() => { if (!disposed) showTab(tab); });

  const off = onEvent((ev) => {
    if (ev.type === 'resync' || (ev.type === 'lifecycle' && ev.machine === id)) void load();
  });
  return () => { disposed = true; off(); closeTab(); };
}

export function joinPath(dir: string, name: string): string {
  return dir.endsWith('/') ? dir + name : `${dir}/${name}`;
}
export function parentPath(p: string): string {
  const i = p.replace(/\/+$/, '').lastIndexOf('/');
  return i <= 0 ? '/' : p.slice(0, i);
}
