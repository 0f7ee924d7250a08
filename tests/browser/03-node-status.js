// Node status reaches the editor: the text under a node. An mqtt in whose broker does not
// answer shows its connection state; a script node shows the status it sets per message.
'use strict';
const assert = require('assert');
const net = require('net');
const r = require('./lib/runner');
const ed = require('./lib/editor');

// A port on 127.0.0.1 that nobody listens on (bound, then closed).
function closedPort() {
    return new Promise((resolve) => {
        const s = net.createServer().listen(0, '127.0.0.1', () => {
            const { port } = s.address();
            s.close(() => resolve(port));
        });
    });
}

const statusText = (page, id) => page.locator(`${ed.nodeSel(id)} .red-ui-flow-node-status-label`);

r.runCases([
    ['mqtt in shows its broker connection state', async (browser) => {
        const port = await closedPort();
        const flows = [
            { id: 'f1', type: 'tab', label: 'Flow 1', disabled: false, info: '' },
            { id: 'b1', type: 'mqtt-broker', name: 'nowhere', broker: '127.0.0.1', port: String(port),
              clientid: '', autoConnect: true, usetls: false, protocolVersion: '4', keepalive: '60',
              cleansession: true },
            { id: 'm1', type: 'mqtt in', z: 'f1', name: 'readings', topic: 'glasshouse/#', qos: '0',
              datatype: 'auto-detect', broker: 'b1', nl: false, rap: true, rh: 0, inputs: 0,
              x: 150, y: 100, wires: [[]] },
        ];
        await r.withRuntime({ flows }, async (rt) => {
            const page = await r.openEditor(browser, rt);
            const label = statusText(page, 'm1');
            // Translated from node-red:common.status.*: the key itself must not show.
            await r.waitFor('the mqtt in status', async () =>
                /^(connecting|disconnected)$/.test((await label.textContent().catch(() => '')) || ''));
            const shape = page.locator(`${ed.nodeSel('m1')} .red-ui-flow-node-status`);
            assert.match(await shape.getAttribute('class'), /red-ui-flow-node-status-(ring|dot)-(red|yellow|grey)/);
            assert.deepStrictEqual(page.errors, []);
        });
    }],
    ['a script node sets a status per message', async (browser) => {
        // eddy runs Lua where Node-RED runs JavaScript: the same status from each.
        const script = r.target === 'eddy'
            ? { type: 'lua', func: 'node.status({fill="green", shape="dot", text="got " .. tostring(msg.payload)})\nreturn msg' }
            : { type: 'function', func: 'node.status({fill:"green", shape:"dot", text:"got " + msg.payload});\nreturn msg;' };
        const flows = [
            { id: 'f1', type: 'tab', label: 'Flow 1', disabled: false, info: '' },
            { id: 'i1', type: 'inject', z: 'f1', name: 'go', props: [{ p: 'payload' }], repeat: '',
              crontab: '', once: false, onceDelay: 0.1, topic: '', payload: '42', payloadType: 'num',
              x: 120, y: 100, wires: [['s1']] },
            Object.assign({ id: 's1', z: 'f1', name: 'count', outputs: 1, initialize: '', finalize: '',
              libs: [], x: 320, y: 100, wires: [[]] }, script),
        ];
        await r.withRuntime({ flows }, async (rt) => {
            const page = await r.openEditor(browser, rt);
            const label = statusText(page, 's1');
            assert.strictEqual((await label.textContent().catch(() => '')) || '', '');
            await ed.clickNodeButton(page, 'i1');
            await r.waitFor('the status "got 42"', async () => (await label.textContent().catch(() => '')) === 'got 42');
            const shape = page.locator(`${ed.nodeSel('s1')} .red-ui-flow-node-status`);
            assert.match(await shape.getAttribute('class'), /red-ui-flow-node-status-dot-green/);
            assert.deepStrictEqual(page.errors, []);
        });
    }],
]);
