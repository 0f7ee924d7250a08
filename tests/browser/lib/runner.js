// runner.js: what every browser test needs. Starts the runtime under test on a free port with
// a flow and a fresh data folder, waits until it answers, drives Debian's chromium through
// playwright-core with a fresh profile, and collects the page's console errors.
//
// Environment:
//   EDDY_BROWSER_TARGET  "eddy" (default; what ctest runs) or "node-red" (to check a test
//                        against the real Node-RED the contract was observed on)
//   EDDY_BIN             the eddy binary (ctest passes it); EDDY_WEB_DIR is passed through
//   EDDY_NODE_RED        for target node-red: node-red's red.js (or its bin script)
//   EDDY_NODE_RED_NODE   for target node-red: the node binary to run it with (default: this one)
//   EDDY_CHROMIUM        the browser (default /usr/bin/chromium)
//   EDDY_BROWSER_KEEP=1  keep the temporary folders (runtime log, data) for a look afterwards
//   EDDY_BROWSER_VERBOSE=1  progress lines (start, editor ready, stop) with times
'use strict';
const fs = require('fs');
const os = require('os');
const path = require('path');
const net = require('net');
const http = require('http');
const { spawn } = require('child_process');

const SRC = path.resolve(__dirname, '..', '..', '..');
const { chromium } = require(path.join(SRC, 'web', 'node_modules', 'playwright-core'));

const target = process.env.EDDY_BROWSER_TARGET || 'eddy';
if (target !== 'eddy' && target !== 'node-red') throw new Error(`EDDY_BROWSER_TARGET: ${target}?`);

// The exit code ctest reads as "skipped" (SKIP_RETURN_CODE in tests/CMakeLists.txt).
const SKIP = 77;
class Skip extends Error {}
// A case returns skip(reason) when the target lacks what it tests.
const skip = (reason) => Promise.reject(new Skip(reason));

// The flags of the editor contract; playwright adds --headless itself and the fresh profile
// comes from launchPersistentContext.
const CHROMIUM_FLAGS = ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'];

// Progress lines, with EDDY_BROWSER_VERBOSE=1.
function note(text) {
    if (process.env.EDDY_BROWSER_VERBOSE === '1') console.log(`# ${text}`);
}

// Waits for cond() to be truthy (polled every 'every' ms) or throws 'what' after 'ms'.
async function waitFor(what, cond, ms = 20000, every = 50) {
    const end = Date.now() + ms;
    for (;;) {
        const v = await cond();
        if (v) return v;
        if (Date.now() > end) throw new Error(`timed out after ${ms} ms waiting for ${what}`);
        await new Promise((r) => setTimeout(r, every));
    }
}

function freePort() {
    return new Promise((resolve, reject) => {
        const srv = net.createServer();
        srv.once('error', reject);
        srv.listen(0, '127.0.0.1', () => {
            const { port } = srv.address();
            srv.close(() => resolve(port));
        });
    });
}

function httpGet(url, headers = {}) {
    return new Promise((resolve) => {
        const req = http.get(url, { headers }, (res) => {
            let body = '';
            res.setEncoding('utf8');
            res.on('data', (c) => (body += c));
            res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body }));
        });
        req.on('error', () => resolve(null));
        req.setTimeout(5000, () => req.destroy());
    });
}

// A test password and its bcrypt hash (cost 8), for the login tests.
const ADMIN = { username: 'admin', password: 'eddy-secret-1',
    hash: '$2b$08$8h3w4wPTYZXWtGJglyeR2.3bGeX/umD1s/6ikjXXmhEApp2yGH1.2' };

// Starts the runtime under test. opts.flows: the flow array it starts with; opts.auth: true
// to require the admin login (user ADMIN). Returns {url, port, dir, log(), stop()}.
async function startRuntime(opts = {}) {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'eddy-browser-'));
    const port = await freePort();
    const flowFile = path.join(dir, 'flows.json');
    fs.writeFileSync(flowFile, JSON.stringify(opts.flows || [], null, 1));
    const auth = opts.auth ? { type: 'credentials',
        users: [{ username: ADMIN.username, password: ADMIN.hash, permissions: '*' }] } : null;
    let cmd, args;
    const env = Object.assign({}, process.env);
    if (target === 'eddy') {
        cmd = process.env.EDDY_BIN;
        if (!cmd) throw new Error('EDDY_BIN is not set (the eddy binary)');
        const data = path.join(dir, 'data');
        args = ['run', flowFile, '--port', String(port), '--data', data];
        if (auth) {
            const settings = path.join(dir, 'settings.json');
            fs.writeFileSync(settings, JSON.stringify({ adminAuth: auth }, null, 1));
            args.push('--settings', settings);
        }
    } else {
        const red = process.env.EDDY_NODE_RED;
        if (!red) throw new Error('EDDY_NODE_RED is not set (node-red\'s red.js)');
        cmd = process.env.EDDY_NODE_RED_NODE || process.execPath;
        const settings = path.join(dir, 'settings.js');
        const s = {
            uiHost: '127.0.0.1', uiPort: port, flowFile: 'flows.json', credentialSecret: 'test',
            logging: { console: { level: 'warn' } },
            telemetry: { enabled: false }, diagnostics: { enabled: false, ui: false },
            externalModules: { palette: { allowInstall: false } },
            editorTheme: { page: { title: 'eddy' }, header: { title: 'eddy' }, tours: false,
                projects: { enabled: false } },
        };
        if (auth) s.adminAuth = auth;
        fs.writeFileSync(settings, 'module.exports = ' + JSON.stringify(s, null, 1) + ';\n');
        args = [red, '-u', dir, '-s', settings];
    }
    const logFile = path.join(dir, 'runtime.log');
    const logFd = fs.openSync(logFile, 'w');
    const child = spawn(cmd, args, { env, stdio: ['ignore', logFd, logFd] });
    fs.closeSync(logFd);
    let exited = null;
    child.on('exit', (code, signal) => (exited = { code, signal }));
    const url = `http://127.0.0.1:${port}/`;
    const rt = {
        url, port, dir, target,
        log: () => fs.readFileSync(logFile, 'utf8'),
        async stop() {
            const t0 = Date.now();
            if (!exited) {
                child.kill('SIGTERM');
                await waitFor('the runtime to stop', () => exited, 10000).catch(() => {
                    child.kill('SIGKILL');
                });
            }
            note(`${target} stopped in ${Date.now() - t0} ms`);
            if (process.env.EDDY_BROWSER_KEEP !== '1') fs.rmSync(dir, { recursive: true, force: true });
            else console.log(`# kept ${dir}`);
        },
    };
    const t0 = Date.now();
    try {
        await waitFor(`${target} to answer on ${url}`, async () => {
            if (exited) throw new Error(`${target} exited (${JSON.stringify(exited)}) before answering:\n${rt.log()}`);
            const r = await httpGet(url);
            return r && r.status === 200;
        }, 60000, 100);
    } catch (e) {
        await rt.stop();
        throw e;
    }
    note(`${target} answers on ${url} after ${Date.now() - t0} ms`);
    return rt;
}

// The browser: one per test file, a fresh profile each launch.
async function launchBrowser() {
    const profile = fs.mkdtempSync(path.join(os.tmpdir(), 'eddy-chromium-'));
    const context = await chromium.launchPersistentContext(profile, {
        executablePath: process.env.EDDY_CHROMIUM || '/usr/bin/chromium',
        headless: true,
        args: CHROMIUM_FLAGS,
        viewport: { width: 1400, height: 900 },
    });
    context.setDefaultTimeout(20000);
    return {
        context,
        async close() {
            await context.close().catch(() => {});
            fs.rmSync(profile, { recursive: true, force: true });
        },
    };
}

// Pages opened by openEditor, closed by withRuntime before it stops the runtime (an open
// editor keeps its websocket, which a graceful server shutdown would wait for).
const openPages = new Set();

// Opens the editor in a new page; resolves when the palette and the workspace are drawn (or,
// with opts.login, when the login dialog shows). page.errors collects console errors, page
// exceptions and failed requests (status >= 400 other than opts.allowStatus).
async function openEditor(browser, rt, opts = {}) {
    const page = await browser.context.newPage();
    openPages.add(page);
    page.errors = [];
    const allow = opts.allowStatus || [];
    page.on('console', (m) => {
        if (m.type() !== 'error') return;
        // The browser's own line for a refused request the test expects (a 409, a 401).
        const st = /^Failed to load resource: the server responded with a status of (\d+)/.exec(m.text());
        if (st && allow.includes(Number(st[1]))) return;
        page.errors.push(`console: ${m.text()}`);
    });
    page.on('pageerror', (e) => page.errors.push(`exception: ${e.message}`));
    page.on('response', (r) => {
        if (r.status() >= 400 && !allow.includes(r.status())) page.errors.push(`HTTP ${r.status()} ${r.url()}`);
    });
    page.on('requestfailed', (r) => {
        if (!/^(ws|wss):/.test(r.url())) page.errors.push(`request failed: ${r.url()} ${r.failure() && r.failure().errorText}`);
    });
    const t0 = Date.now();
    await page.goto(rt.url);
    if (opts.login) {
        await page.locator('#node-dialog-login').waitFor({ state: 'visible' });
        return page;
    }
    await editorReady(page);
    note(`editor ready after ${Date.now() - t0} ms`);
    return page;
}

// The editor has loaded its node definitions and drawn the flows.
async function editorReady(page) {
    await page.waitForFunction(() => window.RED && RED.nodes && RED.workspaces &&
        RED.workspaces.active() && document.querySelector('#red-ui-palette .red-ui-palette-node') &&
        !document.querySelector('#red-ui-loading-progress:not([style*="none"])') &&
        document.querySelector('#red-ui-workspace-chart svg'), null, { timeout: 30000 });
}

// Runs the cases in order, each a function (ctx) => Promise. Prints one line per case and
// "N passed, N failed"; exits 1 on a failure, SKIP when every case skipped.
async function runCases(cases, setup) {
    let passed = 0, failed = 0, skipped = 0;
    const browser = await launchBrowser();
    try {
        for (const [name, fn] of cases) {
            const started = Date.now();
            try {
                await fn(browser);
                passed++;
                console.log(`ok   ${name} (${Date.now() - started} ms)`);
            } catch (e) {
                if (e instanceof Skip) {
                    skipped++;
                    console.log(`skip ${name}: ${e.message}`);
                } else {
                    failed++;
                    console.log(`FAIL ${name}: ${e.stack || e}`);
                }
            }
        }
    } finally {
        await browser.close();
    }
    console.log(`${passed} passed, ${failed} failed, ${skipped} skipped`);
    process.exit(failed ? 1 : passed === 0 && skipped > 0 ? SKIP : 0);
}

// Runs fn with a fresh runtime, stopping it whatever happens; on failure the runtime's log is
// appended to the error.
async function withRuntime(opts, fn) {
    const rt = await startRuntime(opts);
    try {
        const t0 = Date.now();
        const v = await fn(rt);
        note(`case body took ${Date.now() - t0} ms`);
        return v;
    } catch (e) {
        if (!(e instanceof Skip)) e.message += `\n--- ${target} log ---\n${rt.log()}`;
        throw e;
    } finally {
        const t0 = Date.now();
        for (const p of openPages) await p.close().catch(() => {});
        openPages.clear();
        note(`pages closed in ${Date.now() - t0} ms`);
        await rt.stop();
    }
}

module.exports = { target, SRC, ADMIN, SKIP, Skip, skip, waitFor, httpGet, startRuntime,
    launchBrowser, openEditor, editorReady, runCases, withRuntime };
