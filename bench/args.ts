/** `--name value` from a bench script's command line, or `def` when the option is absent. */
export function benchArg(name: string, def: string, argv: readonly string[] = process.argv.slice(2)): string {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 ? argv[i + 1]! : def;
}
