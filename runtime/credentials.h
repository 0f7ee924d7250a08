/* credentials.h: node credentials kept apart from the flows, encrypted at rest in the
 * format Node-RED uses for flows_cred.json: {"$": hex(iv) + base64(aes-256-ctr(JSON))}
 * with the key sha256(secret), so a credentials file moves between eddy and Node-RED
 * with the same credentialSecret. */
#ifndef EDDY_CREDENTIALS_H
#define EDDY_CREDENTIALS_H

#include <jansson.h>

#include "err.h"

/* Encrypts 'creds' (an object: node id -> {field: value}). Ownership: new JSON
 * {"$": "..."}; NULL with 'err' set on failure. */
json_t *eddy_creds_encrypt(const json_t *creds, const char *secret, eddy_err *err);
/* Decrypts a flows_cred.json document. A wrong secret gives EDDY_EINVAL with a message
 * that says so. Ownership: new object. */
json_t *eddy_creds_decrypt(const json_t *doc, const char *secret, eddy_err *err);
/* 'bytes' random bytes as lowercase hex into 'out' (2*bytes+1). EDDY_OK or EDDY_EIO. */
int eddy_random_hex(char *out, size_t bytes);
/* sha256 of 'len' bytes as lowercase hex into 'out' (65 bytes). */
void eddy_sha256_hex(const void *data, size_t len, char out[65]);

#endif
