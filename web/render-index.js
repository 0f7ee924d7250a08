#!/usr/bin/env node
// Renders the editor's index.mst (a Mustache template) into index.html at build time, so the
// runtime only serves a file. Usage: node render-index.js TEMPLATE THEME.json CACHEBUSTER > out
//
// Only the subset index.mst uses is implemented: {{name}} (HTML-escaped), {{{name}}} (raw),
// dotted names, {{.}} inside a section, and {{#name}}...{{/name}} sections over a value
// (rendered once when truthy and not a list, once per item for a list, skipped when falsy or
// an empty list). Anything else in the template (partials, inverted sections, comments,
// delimiter changes) is refused, so a new editor version cannot be rendered wrongly unnoticed.
'use strict';
const fs = require('fs');

function escapeHtml(s) {
    return String(s).replace(/[&<>"'`=\/]/g, (c) => '&#' + c.charCodeAt(0) + ';');
}

function lookup(stack, name) {
    if (name === '.') return stack[stack.length - 1];
    const parts = name.split('.');
    for (let i = stack.length - 1; i >= 0; i--) {
        let v = stack[i];
        if (v === null || typeof v !== 'object' || !(parts[0] in v)) continue;
        for (const p of parts) v = v == null ? undefined : v[p];
        return v;
    }
    return undefined;
}

// Parses into a tree: strings, {var, raw}, {section, children}.
function parse(tpl) {
    const re = /\{\{(\{?)\s*([#\/^!>=&]?)\s*([^}]*?)\s*\}?\}\}/g;
    const root = { children: [] };
    const open = [root];
    let last = 0;
    let m;
    while ((m = re.exec(tpl))) {
        let start = m.index;
        let end = re.lastIndex;
        const [, brace, sigil, name] = m;
        // A section tag alone on its line takes the line with it (Mustache's standalone rule).
        if (sigil === '#' || sigil === '/') {
            const lineStart = tpl.lastIndexOf('\n', start - 1) + 1;
            const lineEnd = tpl.indexOf('\n', end);
            const before = tpl.slice(lineStart, start);
            const after = tpl.slice(end, lineEnd < 0 ? tpl.length : lineEnd);
            if (/^[ \t]*$/.test(before) && /^[ \t]*\r?$/.test(after)) {
                start = lineStart;
                end = lineEnd < 0 ? tpl.length : lineEnd + 1;
            }
        }
        open[open.length - 1].children.push(tpl.slice(last, start));
        last = end;
        if (sigil === '#') {
            const node = { section: name, children: [] };
            open[open.length - 1].children.push(node);
            open.push(node);
        } else if (sigil === '/') {
            const node = open.pop();
            if (!node.section || node.section !== name) throw new Error(`unbalanced section {{/${name}}}`);
        } else if (sigil === '' || sigil === '&') {
            open[open.length - 1].children.push({ var: name, raw: brace === '{' || sigil === '&' });
        } else {
            throw new Error(`unsupported Mustache tag {{${sigil}${name}}}`);
        }
    }
    if (open.length !== 1) throw new Error(`section {{#${open[open.length - 1].section}}} not closed`);
    root.children.push(tpl.slice(last));
    return root;
}

function render(node, stack) {
    let out = '';
    for (const c of node.children) {
        if (typeof c === 'string') {
            out += c;
        } else if (c.var !== undefined) {
            const v = lookup(stack, c.var);
            if (v === undefined || v === null) continue;
            const s = typeof v === 'object' ? JSON.stringify(v) : String(v);
            out += c.raw ? s : escapeHtml(s);
        } else {
            const v = lookup(stack, c.section);
            if (Array.isArray(v)) {
                for (const item of v) out += render(c, stack.concat([item]));
            } else if (v) {
                out += render(c, stack.concat([v]));
            }
        }
    }
    return out;
}

if (require.main === module) {
    const [tplPath, themePath, cacheBuster] = process.argv.slice(2);
    if (!tplPath || !themePath || !cacheBuster) {
        process.stderr.write('usage: render-index.js TEMPLATE THEME.json CACHEBUSTER\n');
        process.exit(2);
    }
    const theme = JSON.parse(fs.readFileSync(themePath, 'utf8'));
    const view = Object.assign({}, theme, { cacheBuster });
    delete view.sessionMessages;
    process.stdout.write(render(parse(fs.readFileSync(tplPath, 'utf8')), [view]));
}

module.exports = { parse, render };
