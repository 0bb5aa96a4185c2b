#!/usr/bin/env node
// Headless-Chromium presence watcher: JsSIP in a real browser subscribes over SIP-over-
// WebSocket (RFC 7118) and waits for a presence state. See README.md beside this file.
//
//   node watch.mjs --wss wss://127.0.0.1:PORT --target sip:alice@example.com \
//       --from sip:bob@example.com (--expect open|closed [--note TEXT] | --expect-terminated)
//       [--timeout-ms 20000] [--user NAME --password PW] [--expires 600] [--debug] [--abrupt]
//
// Exit 0 when the page's state matches, 1 on timeout/mismatch, 2 on a usage or setup error.
import http from 'node:http';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { createRequire } from 'node:module';

const HERE = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(import.meta.url);

const USAGE = `usage: node watch.mjs --wss URL --target SIP-URI --from SIP-URI
  (--expect open|closed [--note TEXT] | --expect-terminated) [--timeout-ms N]
  [--user AUTH-USER] [--password PW] [--expires N] [--chromium PATH] [--debug] [--abrupt]`;

function parseArgs(argv) {
  const o = { timeoutMs: 20000, expires: 600, chromium: '/usr/bin/chromium',
    debug: false, abrupt: false, expectTerminated: false };
  const valued = { '--wss': 'wss', '--target': 'target', '--from': 'from', '--expect': 'expect',
    '--note': 'note', '--timeout-ms': 'timeoutMs', '--user': 'user', '--password': 'password',
    '--expires': 'expires', '--chromium': 'chromium' };
  for (let i = 0; i < argv.length; i++) {
    let a = argv[i];
    let v;
    const eq = a.indexOf('=');
    if (a.startsWith('--') && eq > 0) { v = a.slice(eq + 1); a = a.slice(0, eq); }
    if (a in valued) {
      if (v === undefined) {
        if (i + 1 >= argv.length) usage(`${a} needs a value`);
        v = argv[++i];
      }
      o[valued[a]] = v;
    } else if (a === '--expect-terminated') o.expectTerminated = true;
    else if (a === '--debug') o.debug = true;
    else if (a === '--abrupt') o.abrupt = true;
    else if (a === '-h' || a === '--help') { console.log(USAGE); process.exit(0); }
    else usage(`unknown argument ${a}`);
  }
  for (const k of ['wss', 'target', 'from']) if (!o[k]) usage(`--${k} is required`);
  if (o.expect === undefined && o.note === undefined && !o.expectTerminated) {
    usage('give --expect, --note or --expect-terminated');
  }
  o.timeoutMs = Number(o.timeoutMs);
  o.expires = Number(o.expires);
  if (!(o.timeoutMs > 0) || !(o.expires > 0)) usage('--timeout-ms and --expires must be positive');
  return o;
}

function usage(msg) {
  console.error(`watch.mjs: ${msg}\n${USAGE}`);
  process.exit(2);
}

const log = (...a) => console.log(`[watch +${((Date.now() - T0) / 1000).toFixed(2)}s]`, ...a);
const T0 = Date.now();
const opts = parseArgs(process.argv.slice(2));

// JsSIP >= 3.13 ships CommonJS only (no dist/ build): bundle lib/ for the browser once per run.
async function bundleJsSIP() {
  const esbuild = await import('esbuild');
  const r = await esbuild.build({
    stdin: { contents: "module.exports = require('jssip');", resolveDir: HERE, loader: 'js' },
    bundle: true, format: 'iife', globalName: 'JsSIP', platform: 'browser',
    target: 'es2020', minify: true, write: false, logLevel: 'warning',
  });
  return r.outputFiles[0].contents;
}

function serve(files) {
  const server = http.createServer((req, res) => {
    const p = new URL(req.url, 'http://x').pathname;
    const f = files[p];
    if (!f) { res.writeHead(p === '/favicon.ico' ? 204 : 404); res.end(); return; }
    res.writeHead(200, { 'content-type': f.type, 'cache-control': 'no-store' });
    res.end(f.body);
  });
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

const FIELDS = ['ws', 'sub', 'basic', 'note', 'notifies', 'substate', 'ctype', 'log'];
const readState = (page) => page.evaluate((ids) => Object.fromEntries(
  ids.map((id) => [id, (document.getElementById(id) || {}).textContent ?? null])), FIELDS);

function matches(s) {
  if (opts.expect !== undefined && s.basic !== opts.expect) return false;
  if (opts.note !== undefined && s.note !== opts.note) return false;
  if (opts.expectTerminated && !(s.substate || '').trim().toLowerCase().startsWith('terminated')) {
    return false;
  }
  return true;
}

const withTimeout = (p, ms) => Promise.race([p, new Promise((r) => setTimeout(r, ms))]);

async function main() {
  const { chromium } = require('playwright-core');
  const html = fs.readFileSync(path.join(HERE, 'watch.html'));
  const server = await serve({
    '/watch.html': { type: 'text/html; charset=utf-8', body: html },
    '/jssip.js': { type: 'text/javascript; charset=utf-8', body: await bundleJsSIP() },
  });
  const userDataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'presenced-chromium-'));
  let context = null;
  let code = 1;
  // Last resort if the browser hangs on close.
  const killer = setTimeout(() => { console.error('watch.mjs: hard exit'); process.exit(code || 1); },
    opts.timeoutMs + 30000);
  killer.unref();
  try {
    context = await chromium.launchPersistentContext(userDataDir, {
      executablePath: opts.chromium,
      headless: true,
      ignoreHTTPSErrors: true,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--ignore-certificate-errors', '--disable-dev-shm-usage'],
      timeout: 15000,
    });
    const page = context.pages()[0] || await context.newPage();
    page.on('console', (m) => process.stderr.write(`[console.${m.type()}] ${m.text()}\n`));
    page.on('pageerror', (e) => process.stderr.write(`[pageerror] ${e.message}\n`));
    const q = new URLSearchParams({ wss: opts.wss, target: opts.target, from: opts.from,
      expires: String(opts.expires) });
    if (opts.user !== undefined) q.set('user', opts.user);
    if (opts.password !== undefined) q.set('password', opts.password);
    if (opts.debug) q.set('debug', '1');
    const url = `http://127.0.0.1:${server.address().port}/watch.html?${q}`;
    log(`chromium ${context.browser()?.version() ?? ''} opens ${url.replace(/password=[^&]*/, 'password=***')}`);
    await page.goto(url, { timeout: 15000 });

    const deadline = T0 + opts.timeoutMs;
    let last = '';
    let state = null;
    for (;;) {
      state = await readState(page);
      const shown = JSON.stringify(state);
      if (shown !== last) { log('state', shown); last = shown; }
      if (matches(state)) { code = 0; break; }
      // No NOTIFY can come any more: stop early unless termination is what we wait for.
      if (state.sub.startsWith('terminated') && !opts.expectTerminated) {
        log('subscription is over without a match');
        break;
      }
      if (Date.now() >= deadline) { log(`timeout after ${opts.timeoutMs} ms`); break; }
      await new Promise((r) => setTimeout(r, 100));
    }
    const want = [opts.expect !== undefined && `basic=${opts.expect}`,
      opts.note !== undefined && `note=${JSON.stringify(opts.note)}`,
      opts.expectTerminated && 'substate=terminated*'].filter(Boolean).join(' ');
    if (code === 0) {
      log(`PASS: ${want}`);
    } else {
      log(`FAIL: wanted ${want}; have basic=${JSON.stringify(state.basic)} note=${JSON.stringify(state.note)} substate=${JSON.stringify(state.substate)} notifies=${state.notifies} sub=${JSON.stringify(state.sub)} log=${JSON.stringify(state.log)}`);
      const body = await page.evaluate(() => document.getElementById('body').textContent);
      if (body) log(`last NOTIFY body:\n${body}`);
    }
    if (!opts.abrupt) {
      const r = await withTimeout(page.evaluate((ms) => window.watchStop && window.watchStop(ms), 2000)
        .catch((e) => `watchStop failed: ${e.message}`), 4000);
      log(`unsubscribed: ${r ?? '(no answer)'}`);
    }
  } catch (e) {
    console.error(`watch.mjs: ${e.stack || e}`);
    code = code === 0 ? 0 : 1;
  } finally {
    if (context) await withTimeout(context.close().catch(() => {}), 5000);
    server.close();
    fs.rmSync(userDataDir, { recursive: true, force: true });
  }
  process.exit(code);
}

main();
