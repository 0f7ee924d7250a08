/* webdir.c: the browser editor's folder (see webdir.h). */
#include "webdir.h"

#include <stdlib.h>

const char *eddy_web_dir(void)
{
    const char *env = getenv("EDDY_WEB_DIR");
    if (env && *env)
        return env;
#ifdef EDDY_WEB_DIR
    return EDDY_WEB_DIR;
#else
    return "web";
#endif
}
