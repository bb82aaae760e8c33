/**
 * Kernel module metadata without running `modinfo`: a module is an ELF relocatable whose
 * `.modinfo` section is a sequence of NUL-terminated "key=value" strings (include/linux/
 * moduleparam.h MODULE_INFO). `depends=` lists hard dependencies by module name,
 * `softdep=pre: a b` names modules (or aliases) that should be loaded first, `alias=` names
 * the module answers to. Debian's kernel package ships no modules.dep (depmod runs at install
 * time), so visor computes the load order from these fields itself.
 */
import { VisorError } from '../base/errors.js';

export interface ModuleInfo {
  /** The module's name (`name=`), with '-' normalised to '_' as the kernel does. */
  name: string;
  depends: string[];
  softdepPre: string[];
  aliases: string[];
  vermagic?: string;
}

/** The kernel treats '-' and '_' in module names as the same character (kernel/params.c). */
export function moduleName(s: string): string {
  return s.replace(/-/g, '_');
}

// ELF (System V ABI gABI, "ELF Header" and "Sections").
const ELFCLASS64 = 2;
const ELFDATA2LSB = 1;

/** Returns the raw bytes of a named section of a little-endian ELF64 file. */
export function elfSection(elf: Uint8Array, wanted: string, source = 'ELF file'): Uint8Array | undefined {
  const bad = (why: string) => new VisorError('BadImage', `${source}: ${why}`);
  if (elf.length < 64 || elf[0] !== 0x7f || elf[1] !== 0x45 || elf[2] !== 0x4c || elf[3] !== 0x46) {
    throw bad('not an ELF file');
  }
  if (elf[4] !== ELFCLASS64 || elf[5] !== ELFDATA2LSB) throw bad('not a little-endian ELF64 file');
  const dv = new DataView(elf.buffer, elf.byteOffset, elf.byteLength);
  const shoff = Number(dv.getBigUint64(0x28, true));
  const shentsize = dv.getUint16(0x3a, true);
  const shnum = dv.getUint16(0x3c, true);
  const shstrndx = dv.getUint16(0x3e, true);
  if (shentsize < 64 || shoff + shnum * shentsize > elf.length || shstrndx >= shnum) {
    throw bad('section header table out of bounds');
  }
  const sect = (i: number) => {
    const at = shoff + i * shentsize;
    return {
      name: dv.getUint32(at, true),
      offset: Number(dv.getBigUint64(at + 0x18, true)),
      size: Number(dv.getBigUint64(at + 0x20, true)),
    };
  };
  const strtab = sect(shstrndx);
  if (strtab.offset + strtab.size > elf.length) throw bad('section name table out of bounds');
  const dec = new TextDecoder();
  for (let i = 0; i < shnum; i++) {
    const s = sect(i);
    const nameAt = strtab.offset + s.name;
    let end = nameAt;
    while (end < strtab.offset + strtab.size && elf[end] !== 0) end++;
    if (dec.decode(elf.subarray(nameAt, end)) === wanted) {
      if (s.offset + s.size > elf.length) throw bad(`section ${wanted} out of bounds`);
      return elf.subarray(s.offset, s.offset + s.size);
    }
  }
  return undefined;
}

/** Parses the `.modinfo` section of an (uncompressed) kernel module. */
export function parseModinfo(ko: Uint8Array, source = 'module'): ModuleInfo {
  const sec = elfSection(ko, '.modinfo', source);
  if (!sec) throw new VisorError('BadImage', `${source}: no .modinfo section`);
  const fields = new TextDecoder().decode(sec).split('\0').filter((s) => s.includes('='));
  const info: ModuleInfo = { name: '', depends: [], softdepPre: [], aliases: [] };
  for (const f of fields) {
    const eq = f.indexOf('=');
    const key = f.slice(0, eq);
    const value = f.slice(eq + 1);
    switch (key) {
      case 'name': info.name = moduleName(value); break;
      case 'depends': info.depends.push(...value.split(',').filter(Boolean).map(moduleName)); break;
      case 'alias': info.aliases.push(value); break;
      case 'vermagic': info.vermagic = value; break;
      case 'softdep': {
        // "pre: a b post: c" (modprobe.d(5) softdep syntax).
        let mode = '';
        for (const tok of value.split(/\s+/).filter(Boolean)) {
          if (tok === 'pre:' || tok === 'post:') mode = tok;
          else if (mode === 'pre:') info.softdepPre.push(tok);
        }
        break;
      }
    }
  }
  if (!info.name) throw new VisorError('BadImage', `${source}: .modinfo has no name= field`);
  return info;
}

/**
 * Orders the wanted modules and everything they need so each loads after its dependencies.
 * Hard dependencies must exist (as a module or built into the kernel); soft pre-dependencies
 * are resolved by name or alias and skipped when absent, as modprobe does.
 */
export function moduleLoadOrder(
  wanted: string[],
  available: Map<string, ModuleInfo>,
  builtin: Set<string> = new Set(),
): { order: string[]; builtin: string[]; skippedSoftdeps: string[] } {
  const byAlias = new Map<string, string>();
  for (const m of available.values()) for (const a of m.aliases) if (!byAlias.has(a)) byAlias.set(a, m.name);
  const order: string[] = [];
  const state = new Map<string, 'visiting' | 'done'>();
  const builtinUsed = new Set<string>();
  const skipped = new Set<string>();
  const visit = (name: string, path: string[]) => {
    const s = state.get(name);
    if (s === 'done') return;
    if (s === 'visiting') {
      throw new VisorError('BadImage', `module dependency cycle: ${[...path, name].join(' -> ')}`);
    }
    const info = available.get(name);
    if (!info) {
      if (builtin.has(name)) { builtinUsed.add(name); state.set(name, 'done'); return; }
      const via = path.length ? ` (needed by ${path[path.length - 1]})` : '';
      throw new VisorError('BadImage', `kernel module '${name}'${via} is neither in the kernel package nor built in`);
    }
    state.set(name, 'visiting');
    for (const soft of info.softdepPre) {
      const target = available.has(moduleName(soft)) ? moduleName(soft) : byAlias.get(soft);
      // A soft dependency never closes a cycle: modprobe just skips it then.
      if (target && target !== name && state.get(target) !== 'visiting') visit(target, [...path, name]);
      else if (!target && !builtin.has(moduleName(soft))) skipped.add(soft);
    }
    for (const dep of info.depends) visit(dep, [...path, name]);
    state.set(name, 'done');
    order.push(name);
  };
  for (const w of wanted) visit(moduleName(w), []);
  return { order, builtin: [...builtinUsed], skippedSoftdeps: [...skipped] };
}
