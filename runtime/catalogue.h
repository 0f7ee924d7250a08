/* catalogue.h: the node catalogue the editor loads (`GET nodes` as JSON and as HTML, and
 * `GET icons`). Node-RED's editor groups node types into *node sets*, each with an id
 * "<module>/<set>", a list of types and one HTML fragment holding the sets' editor
 * definitions (RED.nodes.registerType, the edit dialog, the help). eddy's sets:
 *
 *   node-red/inject, node-red/debug  Node-RED's own definitions, read at each call from
 *                                    the web folder's copy of @node-red/nodes (core HTML
 *                                    plus the en-US help from its locales). Without that
 *                                    folder they are left out (one warning per process).
 *   eddy/<stem>                      every other native type: nodes/<stem>.html, compiled
 *                                    into the binary (one set per file of nodes.def).
 *   eddy-lua/<type>                  each Lua node type: editor.html in the type's folder
 *                                    when present, else the definition generated from its
 *                                    declaration (eddy_lua_type_editor_html). Spaces in
 *                                    the type name are written %20 (set ids have none).
 *
 * Every type of the registry is listed in exactly one set, config types and types without
 * a palette entry included. Types the registry has that are neither native nor Lua (test
 * helpers) are listed in an "eddy-extra/<type>" set with no HTML.
 *
 * The web folder is the one the editor is served from (scripts/build-web.sh): its nodes/
 * is the root of the @node-red/nodes package (core/, locales/, icons/, package.json). It
 * may be NULL. Everything here runs on the caller's thread; nothing is cached. */
#ifndef EDDY_CATALOGUE_H
#define EDDY_CATALOGUE_H

#include <jansson.h>
#include <stddef.h>

#include "registry.h"

/* One editor definition compiled into the binary: nodes/<stem>.html. */
typedef struct eddy_catalogue_def {
    const char *stem; /* the file's stem, as in nodes.def ("mqtt_in") */
    const char *html; /* NUL-terminated */
    size_t len;
} eddy_catalogue_def;

/* Every nodes/<stem>.html, in file-name order, ended by an entry with stem NULL. Generated at
 * build time (cmake/embed_defs.cmake). */
extern const eddy_catalogue_def eddy_catalogue_natives[];

/* The compiled-in definition of native stem 'stem', or NULL. Borrowed (static). */
const eddy_catalogue_def *eddy_catalogue_native(const char *stem);

/* The `GET nodes` JSON: [{id, name, types:[...], enabled:true, local:false, user:false,
 * module, version}], one per set as above. Ownership: new reference; NULL when out of
 * memory. */
json_t *eddy_catalogue_sets(const eddy_registry *reg, const char *web_dir);

/* The `GET nodes` HTML: each set of eddy_catalogue_sets, in the same order, as
 * "\n<!-- --- [red-module:<set id>] --- -->\n" followed by its definition. '*len' (may be
 * NULL) gets the length. Ownership: new, eddy_free; NULL when out of memory. */
char *eddy_catalogue_html(const eddy_registry *reg, const char *web_dir, size_t *len);

/* The `GET icons` JSON: {"node-red": [the file names in <web_dir>/nodes/icons, sorted]},
 * or {} when there is no such folder. Ownership: new reference; NULL when out of memory. */
json_t *eddy_catalogue_icons(const char *web_dir);

#endif
