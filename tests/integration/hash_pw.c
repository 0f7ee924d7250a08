/* hash_pw: prints a bcrypt hash of its argument, as `node-red admin hash-pw` makes, for the
 * adminAuth settings of the integration scripts (libcrypt: crypt_gensalt + crypt). Cost 4,
 * the lowest bcrypt allows, keeps the tests quick; eddy accepts any cost.
 *
 *   hash_pw PASSWORD */
#include <crypt.h>
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: hash_pw PASSWORD\n");
        return 2;
    }
    const char *salt = crypt_gensalt("$2b$", 4, NULL, 0);
    const char *hash = salt ? crypt(argv[1], salt) : NULL;
    if (!hash || hash[0] != '$') {
        fprintf(stderr, "hash_pw: libcrypt has no bcrypt\n");
        return 1;
    }
    printf("%s\n", hash);
    return 0;
}
