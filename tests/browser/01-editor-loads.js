// The editor loads from the runtime without a console error, branded eddy, and its palette
// holds the runtime's node types (for eddy: including a shipped Lua type).
'use strict';
const assert = require('assert');
const r = require('./lib/runner');
const ed = require('./lib/editor');

const FLOWS = [
    { id: 'f1', type: 'tab', label: 'Greenhouse', disabled: false, info: '' },
    { id: 'n1', type: 'inject', z: 'f1', name: 'tick', props: [{ p: 'payload' }], repeat: '',
      crontab: '', once: false, onceDelay: 0.1, topic: '', payload: '', payloadType: 'date',
      x: 120, y: 80, wires: [['n2']] },
    { id: 'n2', type: 'debug', z: 'f1', name: 'show', active: true, tosidebar: true,
      console: false, tostatus: false, complete: 'payload', targetType: 'msg', x: 300, y: 80,
      wires: [] },
];

// Nodes as Node-RED exports them: without the properties eddy adds (delay's maxQueue, join's
// maxGroups and maxParts, the broker's outQueueLimit, outQueueBytes, reconnectMin,
// reconnectMax and readCoalesce). eddy's editor must show them valid; the runtime takes its
// defaults.
const NODE_RED_EXPORT = [
    { id: 'f2', type: 'tab', label: 'Exported', disabled: false, info: '' },
    { id: 'b1', type: 'mqtt-broker', name: '', broker: '127.0.0.1', port: '1', clientid: '',
      autoConnect: true, usetls: false, protocolVersion: '4', keepalive: '60', cleansession: true,
      autoUnsubscribe: true, birthTopic: '', birthQos: '0', birthRetain: 'false', birthPayload: '',
      closeTopic: '', closeQos: '0', closeRetain: 'false', closePayload: '', willTopic: '',
      willQos: '0', willRetain: 'false', willPayload: '', sessionExpiry: '' },
    { id: 'm1', type: 'mqtt in', z: 'f2', name: '', topic: 'a/b', qos: '1', datatype: 'auto-detect',
      broker: 'b1', nl: false, rap: true, rh: 0, inputs: 0, x: 120, y: 80, wires: [['d1']] },
    { id: 'd1', type: 'delay', z: 'f2', name: '', pauseType: 'delay', timeout: '5',
      timeoutUnits: 'seconds', rate: '1', nbRateUnits: '1', rateUnits: 'second', randomFirst: '1',
      randomLast: '5', randomUnits: 'seconds', drop: false, allowrate: false, outputs: 1,
      x: 280, y: 80, wires: [['j1']] },
    { id: 'j1', type: 'join', z: 'f2', name: '', mode: 'custom', build: 'array',
      property: 'payload', propertyType: 'msg', key: 'topic', joiner: '\\n', joinerType: 'str',
      useparts: false, accumulate: false, timeout: '', count: '2', reduceRight: false,
      reduceExp: '', reduceInit: '', reduceInitType: '', reduceFixup: '', x: 430, y: 80,
      wires: [[]] },
];

// Types every target serves; eddy also serves its Lua types from nodes/lua.
const TYPES = ['inject', 'debug', 'change', 'switch', 'mqtt in', 'mqtt out'];
const EDDY_TYPES = ['dew point'];

r.runCases([
    ['loads without errors, branded eddy, with the palette', (browser) => r.withRuntime({ flows: FLOWS }, async (rt) => {
        const page = await r.openEditor(browser, rt);
        assert.match(await page.title(), /^eddy\b/);
        assert.strictEqual((await page.locator('#red-ui-header .red-ui-header-logo span').innerText()).trim(), 'eddy');

        const want = TYPES.concat(r.target === 'eddy' ? EDDY_TYPES : []);
        const palette = await page.evaluate(() => [...document.querySelectorAll(
            '#red-ui-palette .red-ui-palette-node')].map((e) => e.getAttribute('data-palette-type')));
        for (const t of want) assert.ok(palette.includes(t), `palette has ${t} (has ${palette.join(', ')})`);
        for (const t of want) {
            assert.strictEqual(await page.evaluate((x) => !!RED.nodes.getType(x), t), true, `${t} registered`);
        }

        // The flow it runs is drawn: both nodes, wired, on the named tab.
        await page.locator('#red-ui-workspace-tabs .red-ui-tab', { hasText: 'Greenhouse' }).waitFor();
        await page.locator('#red-ui-workspace-chart g.red-ui-flow-node-group[id="n1"]').waitFor();
        await page.locator('#red-ui-workspace-chart g.red-ui-flow-node-group[id="n2"]').waitFor();
        assert.strictEqual(await page.evaluate(() => RED.nodes.filterLinks({ source: RED.nodes.node('n1') }).length), 1);

        if (r.target === 'eddy') {
            // eddy's theme: its header image and favicon, and no Node-RED logo.
            const img = page.locator('#red-ui-header .red-ui-header-logo img');
            assert.strictEqual(await img.getAttribute('src'), 'theme/eddy.svg');
            await page.waitForFunction(() => document.querySelector('#red-ui-header .red-ui-header-logo img').naturalWidth > 0);
            assert.strictEqual(await page.locator('link[rel="icon"]').getAttribute('href'), 'theme/favicon.png');
            const fav = await r.httpGet(rt.url + 'theme/favicon.png');
            assert.strictEqual(fav && fav.status, 200);
        }
        // Nothing the editor wanted was missing, and no script failed.
        assert.deepStrictEqual(page.errors, []);
    })],
    ['the Lua type opens its edit dialog', (browser) => r.target !== 'eddy' ? r.skip('Lua types are eddy\'s')
        : r.withRuntime({ flows: FLOWS }, async (rt) => {
        const page = await r.openEditor(browser, rt);
        const id = await ed.dragFromPalette(page, 'dew point', 300, 250);
        await page.locator(`${ed.nodeSel(id)} .red-ui-flow-node`).dblclick();
        const tray = page.locator('.red-ui-tray').last();
        await tray.waitFor({ state: 'visible' });
        await tray.locator('#node-input-temperature').waitFor({ state: 'attached' });
        await tray.locator('#node-dialog-ok').click();
        await tray.waitFor({ state: 'detached' });
        assert.deepStrictEqual(page.errors, []);
    })],
    ['a flow exported by Node-RED shows every node valid', (browser) => r.withRuntime({ flows: NODE_RED_EXPORT }, async (rt) => {
        const page = await r.openEditor(browser, rt);
        const invalid = await page.evaluate(() => {
            const bad = [];
            const check = (n) => { if (!n.valid) bad.push(`${n.type} ${n.id}: ${JSON.stringify(n.validationErrors)}`); };
            RED.nodes.eachNode(check);
            RED.nodes.eachConfig(check);
            return bad;
        });
        assert.deepStrictEqual(invalid, []);
        assert.deepStrictEqual(page.errors, []);
    })],
]);
