/* webdir_test.c: where eddy looks for the browser editor's files. */
#include <stdlib.h>
#include <string.h>

#include "check.h"
#include "webdir.h"

static void test_default_is_build_folder(void)
{
    unsetenv("EDDY_WEB_DIR");
    const char *dir = eddy_web_dir();
    CHECK(dir[0] == '/');
    size_t n = strlen(dir);
    CHECK(n > 4 && strcmp(dir + n - 4, "/web") == 0);
}

static void test_environment_overrides(void)
{
    setenv("EDDY_WEB_DIR", "/srv/eddy-web", 1);
    CHECK_STR_EQ(eddy_web_dir(), "/srv/eddy-web");
    setenv("EDDY_WEB_DIR", "", 1); /* empty means unset, not the current folder */
    CHECK(strcmp(eddy_web_dir(), "") != 0 && eddy_web_dir()[0] == '/');
    unsetenv("EDDY_WEB_DIR");
}

static const check_test tests[] = {{"default_is_build_folder", test_default_is_build_folder},
                                   {"environment_overrides", test_environment_overrides},
                                   {NULL, NULL}};

CHECK_MAIN(tests)
