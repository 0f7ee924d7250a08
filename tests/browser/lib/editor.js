// editor.js: using Node-RED's editor the way a person does (palette drag, port wiring, the
// Deploy button), with the waits each step needs. Reading the editor's state (RED.nodes) is
// only used to find what a step created and to check results.
'use strict';

const nodeSel = (id) => `#red-ui-workspace-chart g.red-ui-flow-node-group[id="${id}"]`;

// The palette entry of a type (scrolled into view).
async function paletteEntry(page, type) {
    const item = page.locator(`#red-ui-palette .red-ui-palette-node[data-palette-type="${type}"]`);
    await item.scrollIntoViewIfNeeded();
    return item;
}

// The ids of the nodes on the active tab of a type.
function nodeIds(page, type) {
    return page.evaluate((t) => RED.nodes.filterNodes({ z: RED.workspaces.active(), type: t })
        .map((n) => n.id), type);
}

// Drags a type from the palette to (x, y) of the workspace; returns the new node's id.
async function dragFromPalette(page, type, x, y) {
    const before = await nodeIds(page, type);
    const box = await (await paletteEntry(page, type)).boundingBox();
    const chart = await page.locator('#red-ui-workspace-chart').boundingBox();
    await page.mouse.move(box.x + box.width / 2, box.y + box.height / 2);
    await page.mouse.down();
    await page.mouse.move(chart.x + x, chart.y + y, { steps: 12 });
    await page.mouse.up();
    const handle = await page.waitForFunction(([t, old]) => {
        const ids = RED.nodes.filterNodes({ z: RED.workspaces.active(), type: t }).map((n) => n.id)
            .filter((id) => !old.includes(id));
        return ids.length === 1 && document.querySelector(`g.red-ui-flow-node-group[id="${ids[0]}"]`) && ids[0];
    }, [type, before]);
    return handle.jsonValue();
}

// Drags a wire from output 'port' of node 'from' to the input of node 'to'.
async function wire(page, from, to, port = 0) {
    const out = page.locator(`${nodeSel(from)} .red-ui-flow-port-output`).nth(port);
    const inp = page.locator(`${nodeSel(to)} .red-ui-flow-port-input`);
    const a = await out.boundingBox();
    const b = await inp.boundingBox();
    await page.mouse.move(a.x + a.width / 2, a.y + a.height / 2);
    await page.mouse.down();
    await page.mouse.move(b.x + b.width / 2, b.y + b.height / 2, { steps: 12 });
    await page.mouse.up();
    await page.waitForFunction(([f, t, p]) => {
        const n = RED.nodes.node(f);
        return RED.nodes.filterLinks({ source: n, sourcePort: p, target: RED.nodes.node(t) }).length === 1;
    }, [from, to, port]);
}

// Clicks Deploy and waits for the runtime's answer: the button goes back to its idle state
// and the success notification shows. Returns that notification's text.
async function deploy(page) {
    const button = page.locator('#red-ui-header-button-deploy');
    await button.click();
    const note = page.locator('.red-ui-notification', { hasText: /deployed/i }).last();
    await note.waitFor({ state: 'visible' });
    await page.waitForFunction(() => !RED.nodes.dirty() &&
        document.querySelector('#red-ui-header-button-deploy').classList.contains('disabled'));
    return note.innerText();
}

// Clicks the button of an inject node.
async function clickNodeButton(page, id) {
    await page.locator(`${nodeSel(id)} .red-ui-flow-node-button`).click();
}

// The debug sidebar's messages (text of each), shown.
async function showDebugSidebar(page) {
    await page.evaluate(() => RED.sidebar.show('debug'));
    await page.locator('.red-ui-debug-content').first().waitFor({ state: 'visible' });
}

function debugMessages(page) {
    return page.locator('.red-ui-debug-content .red-ui-debug-msg');
}

module.exports = { nodeSel, paletteEntry, nodeIds, dragFromPalette, wire, deploy, clickNodeButton,
    showDebugSidebar, debugMessages };
