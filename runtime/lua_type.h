/* lua_type.h: node types written in Lua. A type is a folder holding node.lua, a file that
 * returns the type's declaration (name, palette look, inputs, outputs, properties with
 * defaults and validation, help in Markdown) and its handlers (setup, input, close). eddy
 * loads the folders at start, checks each declaration (an error names the file and line),
 * and registers the type like a native one: flows use it by name, `eddy check` validates
 * its properties, and its editor definition is generated from the declaration. The format
 * is documented for authors in nodes/README.md ("Node types in Lua").
 *
 * Each node of a Lua type runs in its own state (script.h): the file is run again there
 * and its handlers called with the script API. A separate state per type holds the
 * declaration's property validators, which run when a flow is checked. */
#ifndef EDDY_LUA_TYPE_H
#define EDDY_LUA_TYPE_H

#include <stdbool.h>

#include "err.h"
#include "flow.h"
#include "node.h"
#include "registry.h"

/* The folder of the Lua node types shipped with eddy: $EDDY_LUA_NODES when set ("" means
 * none), else the source tree's nodes/lua as configured at build time (CMake's
 * EDDY_LUA_NODES_DIR). Borrowed (static or the environment's). */
const char *eddy_lua_types_dir(void);

/* Loads the Lua node types in 'dir': 'dir' itself when it holds a node.lua (one type), else
 * each of its sub-folders that holds one, in name order. Each valid type is added to 'reg',
 * which owns it. Every problem (one per bad file, with file and line) is appended to
 * 'problems'. Returns the number of types added, or a negative code (EDDY_ENOTFOUND for a
 * missing 'dir', else the first failure's) when anything failed; the good types are added
 * all the same. */
int eddy_lua_types_load(eddy_registry *reg, const char *dir, eddy_problems *problems);
/* Loads the type declared by 'file' (a node.lua) into 'reg'. */
int eddy_lua_type_load_file(eddy_registry *reg, const char *file, eddy_err *err);

/* true for a type made by this module. */
bool eddy_lua_type_is(const eddy_node_type *type);
/* The file a Lua type came from. Borrowed for the life of the registry. NULL if 'type' is
 * not a Lua type. */
const char *eddy_lua_type_file(const eddy_node_type *type);
/* The editor definition of a Lua type, as Node-RED's editor loads one per node type: a
 * `RED.nodes.registerType` script, the edit dialog's template and the help (Markdown).
 * Ownership: new, eddy_free. NULL if 'type' is not a Lua type or out of memory. */
char *eddy_lua_type_editor_html(const eddy_node_type *type);

#endif
