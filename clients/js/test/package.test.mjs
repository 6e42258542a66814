// Tests of what the package promises before any code runs: package.json says what
// an installer needs and tells the truth, longlink.d.ts declares exactly what
// longlink.js exports, and a runtime without WebSocket gets an error that names the
// ways out. The packed tarball is installed and used for real by e2e/jspackage_test.go.
// Run: node --test clients/js/test/
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const dir = fileURLToPath(new URL('..', import.meta.url));
const pkg = JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8'));
const dts = readFileSync(new URL('../longlink.d.ts', import.meta.url), 'utf8');

test('package.json describes an installable ES module with types', () => {
  assert.equal(pkg.name, 'longlink-client');
  assert.match(pkg.version, /^0\.\d+\.\d+$/);
  assert.equal(pkg.private, undefined, 'a private package cannot be packed for a team to install');
  assert.equal(pkg.type, 'module');
  assert.deepEqual(pkg.exports['.'], { types: './longlink.d.ts', default: './longlink.js' });
  assert.equal(Object.keys(pkg.exports['.'])[0], 'types', "'types' must come first: resolvers take the first condition that matches");
  assert.equal(pkg.main, './longlink.js');
  assert.equal(pkg.types, './longlink.d.ts');
  for (const f of ['longlink.js', 'longlink.d.ts']) {
    assert.ok(pkg.files.includes(f), `files lacks ${f}`);
    assert.ok(existsSync(dir + f), `${f} is missing`);
  }
  assert.equal(pkg.sideEffects, false);
  assert.deepEqual(pkg.dependencies, undefined, 'the client has no dependencies');
  // Node 20 is supported with ws or --experimental-websocket (docs/client-js.md).
  assert.equal(pkg.engines.node, '>=20');
});

test('the license field matches the repository', () => {
  // The package is licensed as the repository is (LICENSE at its root, Apache 2.0):
  // changing one must change the other.
  const license = readFileSync(new URL('../../../LICENSE', import.meta.url), 'utf8');
  assert.match(license, /Apache License\s+Version 2\.0/);
  assert.equal(pkg.license, 'Apache-2.0');
  assert.ok(pkg.files.includes('LICENSE'), 'the tarball carries the license text');
  // npm packs the package directory only, so it holds a copy of the root's.
  assert.equal(readFileSync(new URL('../LICENSE', import.meta.url), 'utf8'), license, 'clients/js/LICENSE differs from LICENSE');
});

test('longlink.d.ts declares exactly the values longlink.js exports', async () => {
  const mod = await import('../longlink.js');
  const runtime = Object.keys(mod).sort();
  const declared = [...dts.matchAll(/^export declare (?:const|function|class) (\w+)/gm)].map((m) => m[1]).sort();
  assert.deepEqual(declared, runtime);
  // Every declared class and function is one at runtime, every const is not.
  for (const m of dts.matchAll(/^export declare (const|function|class) (\w+)/gm)) {
    const [, kind, name] = m;
    assert.equal(typeof mod[name] === 'function', kind !== 'const', `${name} is declared as ${kind}`);
  }
  // The declared constant values match.
  for (const [k, v] of Object.entries(mod.CloseCode)) assert.match(dts, new RegExp(`\\b${k}: ${v};`), `CloseCode.${k}`);
  for (const [k, v] of Object.entries(mod.Policy)) assert.match(dts, new RegExp(`\\b${k}: '${v}';`), `Policy.${k}`);
  assert.match(dts, new RegExp(`SUBPROTOCOL_V2: '${mod.SUBPROTOCOL_V2}'`));
});

test('the declared methods of LongLink are its methods', async () => {
  const { LongLink } = await import('../longlink.js');
  const body = dts.slice(dts.indexOf('export declare class LongLink {'));
  const declared = new Set([...body.matchAll(/^ {2}(?:readonly )?(\w+)[<(:]/gm)].map((m) => m[1]));
  declared.delete('constructor');
  const proto = Object.getOwnPropertyNames(LongLink.prototype).filter((n) => n !== 'constructor' && !n.startsWith('_'));
  assert.deepEqual([...declared].sort(), proto.sort());
});

test('without a WebSocket the error names ws and --experimental-websocket', async (t) => {
  const { LongLink } = await import('../longlink.js');
  const saved = Object.getOwnPropertyDescriptor(globalThis, 'WebSocket');
  // Node >= 22 has one: take it away for this test, as Node 20 is.
  if (saved) delete globalThis.WebSocket;
  t.after(() => {
    if (saved) Object.defineProperty(globalThis, 'WebSocket', saved);
  });
  assert.throws(() => new LongLink({ url: 'ws://gw.test/ws', token: 't' }), (err) => {
    assert.ok(err instanceof TypeError);
    assert.match(err.message, /npm install ws/);
    assert.match(err.message, /--experimental-websocket/);
    return true;
  });
});
