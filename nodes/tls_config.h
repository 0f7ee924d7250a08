/* tls_config.h: the state of Node-RED's "tls-config" config node, read by nodes that open
 * TLS connections (mqtt-broker). Strings are borrowed from the flow. */
#ifndef EDDY_NODES_TLS_CONFIG_H
#define EDDY_NODES_TLS_CONFIG_H

#include <stdbool.h>

#include "node.h"

typedef struct tls_config {
    const char *cert; /* client certificate file (PEM), "" for none */
    const char *key;  /* its private key file */
    const char *ca;   /* CA certificate file, "" for the system's */
    const char *servername;
    bool verifyservercert;
} tls_config;

const tls_config *tls_config_of(eddy_node *tls_node);

#endif
