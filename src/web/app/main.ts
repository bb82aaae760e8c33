/**
 * visor's web console: sign in with a token, see and drive machines, open their terminals,
 * watch their metrics, move files, and (admins) read the audit log and operations.
 * Routes are URL fragments: #/machines, #/machines/ID, #/admin, #/signin.
 */
import { ApiError, setToken, token } from './api.js';
import { onEvent, startEvents, stopEvents } from './events.js';
import { h, mount } from './dom.js';
import { api, isAdmin, type Me } from './model.js';
import { machinesView } from './views/machines.js';
import { machineView } from './views/machine.js';
import { adminView } from './views/admin.js';

let me: Me | null = null;
let cleanup: (() => void) | null = null;

const main = () => document.getElementById('main')!;

export function showError(err: unknown): void {
  const banner = document.getElementById('banner')!;
  const text = err instanceof ApiError ? `${err.message} (${err.code})` : err instanceof Error ? err.message : String(err);
  banner.className = 'banner';
  banner.textContent = text;
  banner.hidden = false;
  if (err instanceof ApiError && err.status === 401) signOut('Your token was refused; sign in again.');
}

export function clearError(): void {
  const banner = document.getElementById('banner')!;
  banner.hidden = true;
  banner.textContent = '';
}

function signOut(message?: string): void {
  setToken(null);
  me = null;
  stopEvents();
  location.hash = '#/signin';
  if (message) queueMicrotask(() => {
    const banner = document.getElementById('banner')!;
    banner.className = 'banner info';
    banner.textContent = message;
    banner.hidden = false;
  });
}

function renderNav(): void {
  const nav = document.getElementById('nav')!;
  const here = location.hash;
  const link = (href: string, label: string) => h('a', { href, class: here.startsWith(href) ? 'active' : undefined }, label);
  if (!me) { mount(nav); return; }
  mount(nav,
    link('#/machines', 'Machines'),
    isAdmin(me.role) && link('#/admin', 'Audit & operations'),
    h('span', { class: 'muted' }, `${me.role} · ${me.project}`),
    h('a', { href: '#/signin', onclick: (e: Event) => { e.preventDefault(); signOut(); } }, 'Sign out'),
  );
}

function signInView(root: HTMLElement): void {
  const input = h('input', { type: 'password', name: 'token', autocomplete: 'off', required: true, 'aria-label': 'API token' });
  const form = h('form', {
    onsubmit: async (e: Event) => {
      e.preventDefault();
      setToken(input.value.trim());
      try {
        me = await api.me();
        clearError();
        location.hash = '#/machines';
      } catch (err) {
        setToken(null);
        showError(err);
      }
    },
  },
  h('label', {}, 'Token', input),
  h('button', { class: 'primary', type: 'submit' }, 'Sign in'),
  h('p', { class: 'muted' }, 'The daemon wrote an admin token to STATE_DIR/admin.token at its first start; `visor token create` makes more. The token is kept in this tab only.'));
  mount(root, h('div', { class: 'signin panel' }, h('h1', {}, 'Sign in to visor'), form));
  input.focus();
}

async function route(): Promise<void> {
  cleanup?.();
  cleanup = null;
  const root = main();
  const hash = location.hash || '#/machines';
  if (!token()) {
    me = null;
    renderNav();
    if (hash !== '#/signin') { location.hash = '#/signin'; return; }
    signInView(root);
    return;
  }
  if (hash === '#/signin') { signInView(root); renderNav(); return; }
  if (!me) {
    try { me = await api.me(); } catch (err) { showError(err); if (!me) return; }
  }
  startEvents();
  renderNav();
  const m = /^#\/machines\/([^/]+)$/.exec(hash);
  if (m) cleanup = machineView(root, decodeURIComponent(m[1]!), me!, showError);
  else if (hash === '#/admin' && isAdmin(me!.role)) cleanup = adminView(root, showError);
  else cleanup = machinesView(root, me!, showError);
  root.focus();
}

onEvent((ev) => {
  if (ev.type === 'token-revoked') signOut('This token was revoked.');
});
window.addEventListener('hashchange', () => { clearError(); void route(); });
void route();
