/* webdir.h: where eddy finds the browser editor's files (made by scripts/build-web.sh):
 *   public/   the editor client's static files, index.html, FILE.gz beside compressible files
 *   locales/  the editor's message catalogues (locales/<lang>/<namespace>.json)
 *   nodes/    @node-red/nodes (core/, locales/, icons/): inject's and debug's definitions
 *   theme/    eddy's theme assets and theme.json (the `GET theme` answer); its paths
 *             (theme/favicon.png, theme/eddy.svg) are URLs under the editor root, so theme/
 *             is served at "theme/" and public/ at the root */
#ifndef EDDY_WEBDIR_H
#define EDDY_WEBDIR_H

/* $EDDY_WEB_DIR when set, else the build's web folder as configured at build time (CMake's
 * EDDY_WEB_DIR). Borrowed (static or the environment's). */
const char *eddy_web_dir(void);

#endif
