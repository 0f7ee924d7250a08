#!/usr/bin/env bash
# Assembles the browser editor eddy serves: scripts/build-web.sh SRC OUT [VERSION]
#
#   OUT/public/   @node-red/editor-client's public/ with eddy's favicon.ico, index.html rendered
#                 from the editor's index.mst with web/theme.json, and FILE.gz (gzip -9 -n)
#                 beside every file that compresses by at least 10 %
#   OUT/locales/  the editor's message catalogues
#   OUT/nodes/    @node-red/nodes (core/, locales/, icons/): inject's and debug's definitions
#   OUT/theme/    eddy's own theme assets (web/theme/) and theme.json (the `GET theme` answer)
#
# The packages come from web/package-lock.json: `npm ci` runs when web/node_modules is missing
# or older than the lockfile. OUT is assembled beside itself and swapped in whole.
set -euo pipefail

src=${1:?usage: build-web.sh SRC OUT [VERSION]}
out=${2:?usage: build-web.sh SRC OUT [VERSION]}
version=${3:-dev}
web="$src/web"

command -v node >/dev/null && command -v npm >/dev/null ||
    { echo "build-web: node and npm are needed (scripts/install-deps.sh installs them)" >&2; exit 1; }

# One npm ci at a time per source tree (the release and sanitizer builds may run together).
exec 9>"$web/.npm.lock"
flock 9
stamp="$web/node_modules/.package-lock.json"
if [ ! -f "$stamp" ] || [ "$web/package-lock.json" -nt "$stamp" ]; then
    echo "build-web: npm ci in $web"
    (cd "$web" && npm ci --ignore-scripts --no-audit --no-fund --loglevel=error)
    touch "$stamp"
fi
flock -u 9

client="$web/node_modules/@node-red/editor-client"
nodes="$web/node_modules/@node-red/nodes"
for f in "$client/public/red/red.min.js" "$client/templates/index.mst" "$nodes/core"; do
    [ -e "$f" ] || { echo "build-web: $f is missing; remove $web/node_modules and build again" >&2; exit 1; }
done

tmp="$out.tmp.$$"
rm -rf "$tmp"
trap 'rm -rf "$tmp"' EXIT
mkdir -p "$tmp/nodes" "$tmp/theme" "$tmp/licenses"

cp -R "$client/public" "$tmp/public"
cp -R "$client/locales" "$tmp/locales"
cp -R "$nodes/core" "$nodes/locales" "$nodes/icons" "$nodes/package.json" "$tmp/nodes/"
cp "$web/theme/"* "$web/theme.json" "$tmp/theme/"
cp "$web/theme/favicon.ico" "$tmp/public/favicon.ico"
cp "$client/LICENSE" "$tmp/licenses/editor-client.LICENSE"
cp "$nodes/LICENSE" "$tmp/licenses/nodes.LICENSE"

node "$web/render-index.js" "$client/templates/index.mst" "$web/theme.json" "$version" \
    >"$tmp/public/index.html"

# Pre-compressed copies for the static server: kept only where they save 10 % or more.
find "$tmp/public" "$tmp/theme" -type f -size +511c \
    \( -name '*.js' -o -name '*.css' -o -name '*.html' -o -name '*.json' -o -name '*.svg' \
    -o -name '*.map' -o -name '*.ttf' -o -name '*.eot' -o -name '*.otf' -o -name '*.woff' \
    -o -name '*.ico' -o -name '*.txt' -o -name '*.md' -o -name '*.ts' \) -print0 |
    xargs -0 -r -n 64 -P 2 sh -c '
        for f; do
            gzip -9 -n -c "$f" >"$f.gz"
            if [ $(( $(stat -c %s "$f.gz") * 10 )) -gt $(( $(stat -c %s "$f") * 9 )) ]; then
                rm -f "$f.gz"
            fi
        done' sh

rm -rf "$out.old"
[ -e "$out" ] && mv "$out" "$out.old"
mv "$tmp" "$out"
rm -rf "$out.old"
trap - EXIT
