// defs_check.mjs: checks every editor definition eddy serves (the `GET nodes` HTML, as
// printed by catalogue_dump) with Node.js: each <script type="text/javascript"> must
// parse, and run against a stand-in for the editor's RED object; each type it registers
// needs a dialog template and help in the same set; label, icon and the other callbacks
// that run without a dialog must work on a node holding the defaults.
// Usage: node defs_check.mjs CATALOGUE_DUMP LUA_TYPES_DIR
import {execFileSync} from "node:child_process";
import vm from "node:vm";

const [dump, luaDir] = process.argv.slice(2);
const html = execFileSync(dump, [luaDir], {encoding: "utf8", env: {...process.env, EDDY_LOG: "off"}});
const sets = html.split(/(?=\n<!-- --- \[red-module:\S+\] --- -->\n)/).filter((s) => s.trim() !== "");
let failures = 0;
function fail(set, text) {
    console.error(`FAIL ${set}: ${text}`);
    failures++;
}

const scriptRe = /<script type="text\/javascript">([\s\S]*?)<\/script>/g;
let registered = 0;
for (const chunk of sets) {
    const id = /\[red-module:(\S+)\]/.exec(chunk)[1];
    const types = [];
    const validator = () => () => true;
    const RED = {
        nodes: {
            registerType(type, def) {
                types.push([type, def]);
            },
            eachNode() {},
            node() {
                return null;
            },
            subflow() {
                return null;
            },
            workspace() {
                return null;
            },
        },
        validators: {number: validator, regex: validator, typedInput: validator},
        settings: {},
        utils: {getNodeLabel: (n, d) => d},
        _: (k) => k,
    };
    const context = vm.createContext({RED, console, window: {}});
    for (const m of chunk.matchAll(scriptRe)) {
        const src = m[1];
        try {
            new Function(src); // syntax only
        } catch (e) {
            fail(id, `syntax error: ${e.message}`);
            continue;
        }
        try {
            vm.runInContext(src, context, {filename: id});
        } catch (e) {
            fail(id, `running the definition: ${e.message}`);
        }
    }
    for (const [type, def] of types) {
        registered++;
        const attr = type.replace(/"/g, "&quot;");
        if (!chunk.includes(`data-template-name="${attr}"`)) {
            fail(id, `type '${type}' has no data-template-name`);
        }
        if (!chunk.includes(`data-help-name="${attr}"`)) {
            fail(id, `type '${type}' has no data-help-name`);
        }
        if (typeof def.defaults !== "object" || def.defaults === null) {
            fail(id, `type '${type}' has no defaults object`);
            continue;
        }
        if (def.category !== "config" && (typeof def.inputs !== "number" || def.outputs === undefined)) {
            fail(id, `type '${type}' lacks inputs or outputs`);
        }
        const node = {type, _: (k) => k};
        for (const [k, v] of Object.entries(def.defaults)) {
            node[k] = v.value;
        }
        for (const f of ["label", "icon", "paletteLabel", "labelStyle", "inputLabels", "outputLabels"]) {
            if (typeof def[f] === "function") {
                try {
                    def[f].call(node, 0);
                } catch (e) {
                    fail(id, `${type}.${f}(): ${e.message}`);
                }
            }
        }
        for (const f of ["oneditprepare", "oneditsave", "oneditcancel", "oneditresize"]) {
            if (def[f] !== undefined && typeof def[f] !== "function") {
                fail(id, `${type}.${f} is not a function`);
            }
        }
    }
}
if (registered === 0) {
    fail("catalogue", "no type registered at all");
}
console.log(`${sets.length} sets, ${registered} types registered, ${failures} failures`);
process.exit(failures ? 1 : 0);
