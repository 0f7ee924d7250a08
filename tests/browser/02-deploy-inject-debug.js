// The editor as a person uses it: drag an inject and a debug from the palette, wire them,
// deploy, press the inject button, and the runtime's message reaches the debug sidebar.
'use strict';
const assert = require('assert');
const r = require('./lib/runner');
const ed = require('./lib/editor');

const TAB = [{ id: 'f1', type: 'tab', label: 'Flow 1', disabled: false, info: '' }];

r.runCases([
    ['drag, wire, deploy, inject, debug sidebar', (browser) => r.withRuntime({ flows: TAB }, async (rt) => {
        const page = await r.openEditor(browser, rt);
        const inject = await ed.dragFromPalette(page, 'inject', 200, 150);
        const debug = await ed.dragFromPalette(page, 'debug', 450, 150);
        await ed.wire(page, inject, debug);
        const note = await ed.deploy(page);
        assert.match(note, /deployed/i);

        // The runtime now runs the flow: the server's flows are what the editor drew.
        const flows = JSON.parse((await r.httpGet(rt.url + 'flows', { 'Node-RED-API-Version': 'v2' })).body);
        const served = flows.flows.find((n) => n.id === inject);
        assert.ok(served, 'the deployed inject is in GET flows');
        assert.deepStrictEqual(served.wires, [[debug]]);

        await ed.showDebugSidebar(page);
        const msgs = ed.debugMessages(page);
        assert.strictEqual(await msgs.count(), 0);
        const before = Date.now();
        await ed.clickNodeButton(page, inject);
        await msgs.first().waitFor({ state: 'visible' });
        // The default inject sends a timestamp: a number near the time of the click.
        const payload = await msgs.first().locator('.red-ui-debug-msg-type-number').innerText();
        const ts = Number(payload);
        assert.ok(ts >= before - 60000 && ts <= Date.now() + 60000, `payload ${payload} is a timestamp`);
        const name = await msgs.first().locator('.red-ui-debug-msg-name').innerText();
        assert.match(name, /debug/);

        // A second press: a second message.
        await ed.clickNodeButton(page, inject);
        await r.waitFor('a second debug message', async () => (await msgs.count()) === 2);
        assert.deepStrictEqual(page.errors, []);
    })],
]);
