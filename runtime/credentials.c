/* credentials.c: see credentials.h. OpenSSL's libcrypto does the cipher and hashing. */
#include "credentials.h"

#include <openssl/evp.h>
#include <openssl/rand.h>
#include <openssl/sha.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "msg.h"

#define IV_BYTES 16

void eddy_sha256_hex(const void *data, size_t len, char out[65])
{
    unsigned char digest[SHA256_DIGEST_LENGTH];
    SHA256(data, len, digest);
    for (int i = 0; i < SHA256_DIGEST_LENGTH; i++)
        snprintf(out + i * 2, 3, "%02x", digest[i]);
}

int eddy_random_hex(char *out, size_t bytes)
{
    unsigned char buf[64];
    if (bytes > sizeof(buf) || RAND_bytes(buf, (int)bytes) != 1)
        return EDDY_EIO;
    for (size_t i = 0; i < bytes; i++)
        snprintf(out + i * 2, 3, "%02x", buf[i]);
    return EDDY_OK;
}

/* aes-256-ctr is its own inverse: the same call encrypts and decrypts. */
static int aes_ctr(const char *secret, const unsigned char iv[IV_BYTES], const unsigned char *in,
                   size_t len, unsigned char *out)
{
    unsigned char key[SHA256_DIGEST_LENGTH];
    SHA256((const unsigned char *)secret, strlen(secret), key);
    EVP_CIPHER_CTX *ctx = EVP_CIPHER_CTX_new();
    int n = 0, fin = 0;
    int ok = ctx && EVP_EncryptInit_ex(ctx, EVP_aes_256_ctr(), NULL, key, iv) == 1 &&
             EVP_EncryptUpdate(ctx, out, &n, in, (int)len) == 1 &&
             EVP_EncryptFinal_ex(ctx, out + n, &fin) == 1;
    EVP_CIPHER_CTX_free(ctx);
    return ok ? EDDY_OK : EDDY_EINTERNAL;
}

json_t *eddy_creds_encrypt(const json_t *creds, const char *secret, eddy_err *err)
{
    char *plain = json_dumps(creds, JSON_COMPACT);
    if (!plain) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory encrypting credentials");
        return NULL;
    }
    size_t len = strlen(plain);
    unsigned char iv[IV_BYTES];
    unsigned char *cipher = eddy_malloc(len + 1);
    char *b64 = NULL;
    json_t *out = NULL;
    if (!cipher || RAND_bytes(iv, IV_BYTES) != 1 ||
        aes_ctr(secret, iv, (unsigned char *)plain, len, cipher) != EDDY_OK) {
        eddy_err_set(err, EDDY_EINTERNAL, "cannot encrypt credentials");
        goto done;
    }
    b64 = eddy_base64_encode(cipher, len);
    char *text = b64 ? eddy_malloc(IV_BYTES * 2 + strlen(b64) + 1) : NULL;
    if (!text) {
        eddy_err_set(err, EDDY_ENOMEM, "out of memory encrypting credentials");
        goto done;
    }
    for (int i = 0; i < IV_BYTES; i++)
        snprintf(text + i * 2, 3, "%02x", iv[i]);
    strcpy(text + IV_BYTES * 2, b64);
    out = json_pack("{s:s}", "$", text);
    eddy_free(text);
done:
    eddy_free(b64);
    eddy_free(cipher);
    eddy_free(plain);
    return out;
}

static unsigned char *base64_decode(const char *in, size_t *out_len)
{
    size_t len = strlen(in);
    unsigned char *out = eddy_malloc(len / 4 * 3 + 3);
    if (!out)
        return NULL;
    int n = EVP_DecodeBlock(out, (const unsigned char *)in, (int)len);
    if (n < 0) {
        eddy_free(out);
        return NULL;
    }
    /* EVP_DecodeBlock counts padding as data */
    while (len > 0 && in[len - 1] == '=') {
        n--;
        len--;
    }
    *out_len = (size_t)n;
    return out;
}

json_t *eddy_creds_decrypt(const json_t *doc, const char *secret, eddy_err *err)
{
    const char *text = json_string_value(json_object_get(doc, "$"));
    if (!text) /* an unencrypted file (credentialSecret false in Node-RED) */
        return json_is_object(doc) ? json_deep_copy(doc) : json_object();
    if (strlen(text) < IV_BYTES * 2) {
        eddy_err_set(err, EDDY_EPARSE, "credentials file is damaged (too short)");
        return NULL;
    }
    unsigned char iv[IV_BYTES];
    for (int i = 0; i < IV_BYTES; i++) {
        int hi = eddy_hex_digit(text[i * 2]), lo = eddy_hex_digit(text[i * 2 + 1]);
        if (hi < 0 || lo < 0) {
            eddy_err_set(err, EDDY_EPARSE, "credentials file is damaged (bad vector)");
            return NULL;
        }
        iv[i] = (unsigned char)(hi * 16 + lo);
    }
    size_t len = 0;
    unsigned char *cipher = base64_decode(text + IV_BYTES * 2, &len);
    unsigned char *plain = cipher ? eddy_malloc(len + 1) : NULL;
    json_t *out = NULL;
    if (!plain || aes_ctr(secret, iv, cipher, len, plain) != EDDY_OK) {
        eddy_err_set(err, EDDY_EPARSE, "credentials file is damaged (bad base64)");
    } else {
        out = json_loadb((const char *)plain, len, 0, NULL);
        if (!json_is_object(out)) {
            json_decref(out);
            out = NULL;
            eddy_err_set(err, EDDY_EINVAL,
                         "cannot decrypt the credentials: the credential secret is not the one "
                         "they were saved with");
        }
    }
    eddy_free(plain);
    eddy_free(cipher);
    return out;
}
