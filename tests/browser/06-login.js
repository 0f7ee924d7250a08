// Admin login: with a user in the settings, the editor asks for credentials, refuses wrong
// ones, and loads after the right ones; the API refuses requests without the token.
'use strict';
const assert = require('assert');
const r = require('./lib/runner');

r.runCases([
    ['login required, wrong password refused, right one loads the editor', (browser) =>
        r.withRuntime({ flows: [{ id: 'f1', type: 'tab', label: 'Flow 1', disabled: false, info: '' }], auth: true }, async (rt) => {
            // Without a token the admin API refuses.
            const anon = await r.httpGet(rt.url + 'flows', { 'Node-RED-API-Version': 'v2' });
            assert.strictEqual(anon.status, 401);

            const page = await r.openEditor(browser, rt, { login: true, allowStatus: [401, 403] });
            await page.locator('#node-dialog-login-username').fill(r.ADMIN.username);
            await page.locator('#node-dialog-login-password').fill('not-the-password');
            const failed = page.waitForResponse((res) => res.url().endsWith('/auth/token'));
            await page.locator('#node-dialog-login-submit').click();
            assert.notStrictEqual((await failed).status(), 200);
            await page.locator('#node-dialog-login-failed').waitFor({ state: 'visible' });
            assert.strictEqual(await page.evaluate(() => !!(window.RED && RED.nodes && RED.workspaces.active())), false);

            await page.locator('#node-dialog-login-password').fill(r.ADMIN.password);
            const ok = page.waitForResponse((res) => res.url().endsWith('/auth/token'));
            await page.locator('#node-dialog-login-submit').click();
            assert.strictEqual((await ok).status(), 200);
            const { editorReady } = r;
            await editorReady(page);
            await page.locator('#node-dialog-login').waitFor({ state: 'hidden' });

            // The token the editor holds opens the API.
            const token = await page.evaluate(() => JSON.parse(localStorage.getItem('auth-tokens')).access_token);
            const authed = await r.httpGet(rt.url + 'flows', { 'Node-RED-API-Version': 'v2', Authorization: `Bearer ${token}` });
            assert.strictEqual(authed.status, 200);
            assert.ok(Array.isArray(JSON.parse(authed.body).flows));
            assert.deepStrictEqual(page.errors, []);
        })],
]);
