// Unknown node types: a flow holding one (at start, or imported and deployed through the
// editor) makes the runtime send the missing-types notification, which the editor shows
// with the type's name.
'use strict';
const assert = require('assert');
const r = require('./lib/runner');
const ed = require('./lib/editor');

const TAB = { id: 'f1', type: 'tab', label: 'Flow 1', disabled: false, info: '' };

function missingNote(page) {
    return page.locator('.red-ui-notification-warning', { hasText: /missing node types/i });
}

r.runCases([
    ['a flow with an unknown type, at start', (browser) => r.withRuntime({
        flows: [TAB, { id: 'u1', type: 'no-such-node', z: 'f1', x: 150, y: 100, wires: [] }],
    }, async (rt) => {
        const page = await r.openEditor(browser, rt);
        const note = missingNote(page);
        await note.waitFor({ state: 'visible' });
        assert.match(await note.innerText(), /no-such-node/);
        // The editor draws the node as unknown.
        await page.locator(`${ed.nodeSel('u1')}.red-ui-flow-node-unknown, ${ed.nodeSel('u1')} .red-ui-flow-node-unknown`).first().waitFor();
        assert.deepStrictEqual(page.errors, []);
    })],
    ['imported through the editor and deployed', (browser) => r.withRuntime({ flows: [TAB] }, async (rt) => {
        const page = await r.openEditor(browser, rt);
        // Import dialog (ctrl-i), paste, Import, place the node with a click.
        await page.locator('#red-ui-workspace-chart').click({ position: { x: 600, y: 500 } });
        await page.keyboard.press('Control+i');
        const text = page.locator('#red-ui-clipboard-dialog-import-text');
        await text.waitFor({ state: 'visible' });
        await text.fill(JSON.stringify([{ id: 'u2', type: 'other-unknown-type', z: 'f1', x: 200, y: 200, wires: [] }]));
        await text.press('End'); // the dialog validates on key presses
        await page.locator('#red-ui-clipboard-dialog-ok:not([disabled])').click();
        const chart = await page.locator('#red-ui-workspace-chart').boundingBox();
        await page.mouse.move(chart.x + 300, chart.y + 300, { steps: 5 });
        await page.mouse.click(chart.x + 300, chart.y + 300);
        // The editor keeps an unknown node as type "unknown" with its own type as the name.
        await page.waitForFunction(() => RED.nodes.filterNodes({ z: RED.workspaces.active() }).length === 1);

        // Deploy: the editor asks first, then the runtime reports the type missing.
        await page.locator('#red-ui-header-button-deploy').click();
        const confirm = page.locator('#red-ui-deploy-dialog-confirm-deploy-deploy');
        await confirm.waitFor({ state: 'visible' });
        await confirm.click();
        const note = missingNote(page);
        await note.waitFor({ state: 'visible' });
        assert.match(await note.innerText(), /other-unknown-type/);
        // The runtime kept the flow as deployed (it waits for the type).
        const flows = JSON.parse((await r.httpGet(rt.url + 'flows', { 'Node-RED-API-Version': 'v2' })).body);
        assert.ok(flows.flows.some((n) => n.type === 'other-unknown-type'));
        assert.deepStrictEqual(page.errors, []);
    })],
]);
