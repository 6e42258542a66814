// lines.mjs is the line protocol every e2e driver speaks (browser.mjs, echo.mjs,
// pusher_node.mjs): the Go test writes one JSON command per line on stdin, the driver
// answers one JSON line per command on stdout, {"ok":true,...} or {"ok":false,
// "error":...}. serveLines runs commands[cmd.cmd]({timeoutMs: 10000, ...cmd}) for each
// until {"cmd":"quit"} or the end of stdin; check(cmd), if given, may throw after a
// command succeeded (a page threw meanwhile); failure(cmd, err) adds fields to a
// failed command's reply (what the page or client showed).
import { createInterface } from 'node:readline';

export async function serveLines(commands, { check, failure } = {}) {
  const rl = createInterface({ input: process.stdin });
  for await (const line of rl) {
    if (!line.trim()) continue;
    let cmd;
    try {
      cmd = JSON.parse(line);
    } catch (err) {
      reply({ ok: false, error: `bad command ${line}: ${err.message}` });
      continue;
    }
    if (cmd.cmd === 'quit') break;
    const fn = commands[cmd.cmd];
    if (!fn) {
      reply({ ok: false, error: `unknown command ${cmd.cmd}` });
      continue;
    }
    try {
      const extra = await fn({ timeoutMs: 10000, ...cmd });
      if (check) await check(cmd);
      reply({ ok: true, ...extra });
    } catch (err) {
      reply({ ok: false, error: String(err?.message ?? err).split('\n')[0], ...(failure ? await failure(cmd, err) : {}) });
    }
  }
}

function reply(obj) {
  process.stdout.write(JSON.stringify(obj) + '\n');
}
