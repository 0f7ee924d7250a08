/* catalogue_dump.c: prints the `GET nodes` HTML of the native types and the Lua types
 * shipped in nodes/lua (argv[1]), for defs_check.mjs to check with Node.js. */
#include <stdio.h>

#include "catalogue.h"
#include "flow.h"
#include "log.h"
#include "lua_type.h"
#include "mem.h"
#include "registry.h"

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: catalogue_dump LUA_TYPES_DIR\n");
        return 2;
    }
    eddy_mem_install();
    eddy_log_set_level(EDDY_LOG_ERROR); /* no warning about the absent web folder */
    eddy_err err = {0};
    eddy_registry *reg = eddy_registry_new(&err);
    if (!reg || eddy_registry_add_builtin(reg, &err) != EDDY_OK) {
        fprintf(stderr, "catalogue_dump: %s\n", err.msg);
        return 1;
    }
    eddy_problems problems = {0};
    int n = eddy_lua_types_load(reg, argv[1], &problems);
    eddy_problems_clear(&problems);
    if (n < 0) {
        fprintf(stderr, "catalogue_dump: cannot load the Lua types in %s\n", argv[1]);
        eddy_registry_free(reg);
        return 1;
    }
    size_t len = 0;
    char *html = eddy_catalogue_html(reg, NULL, &len);
    int rc = html && fwrite(html, 1, len, stdout) == len ? 0 : 1;
    eddy_free(html);
    eddy_registry_free(reg);
    return rc;
}
