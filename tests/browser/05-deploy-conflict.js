// Two editors on one runtime: A deploys, then B (whose flows are now stale) deploys. The
// runtime refuses B's deploy with 409 and B's editor offers its conflict dialog; merging and
// deploying again keeps both editors' changes.
'use strict';
const assert = require('assert');
const r = require('./lib/runner');
const ed = require('./lib/editor');

const TAB = [{ id: 'f1', type: 'tab', label: 'Flow 1', disabled: false, info: '' }];

r.runCases([
    ['stale deploy: 409, conflict dialog, merge', (browser) => r.withRuntime({ flows: TAB }, async (rt) => {
        const a = await r.openEditor(browser, rt);
        const b = await r.openEditor(browser, rt, { allowStatus: [409] });
        const fromA = await ed.dragFromPalette(a, 'inject', 200, 150);
        await ed.deploy(a);

        // B is told the server's flows changed in the background.
        await b.locator('.red-ui-notification', { hasText: /updated/i }).first().waitFor({ state: 'visible' });

        const fromB = await ed.dragFromPalette(b, 'debug', 450, 300);
        const refused = b.waitForResponse((res) => res.url().endsWith('/flows') && res.request().method() === 'POST');
        await b.locator('#red-ui-header-button-deploy').click();
        const res = await refused;
        assert.strictEqual(res.status(), 409);
        assert.strictEqual((await res.json()).code, 'version_mismatch');

        const dialog = b.locator('.red-ui-notification', { hasText: /more recent set of flows/i });
        await dialog.waitFor({ state: 'visible' });
        await dialog.locator('#red-ui-deploy-dialog-confirm-deploy-merge').click();
        await b.waitForFunction((id) => !!RED.nodes.node(id), fromA); // A's node merged in
        await ed.deploy(b);

        const flows = JSON.parse((await r.httpGet(rt.url + 'flows', { 'Node-RED-API-Version': 'v2' })).body);
        const ids = flows.flows.map((n) => n.id);
        assert.ok(ids.includes(fromA) && ids.includes(fromB), `both nodes deployed (${ids})`);
        assert.deepStrictEqual(a.errors, []);
        assert.deepStrictEqual(b.errors, []);
    })],
]);
