/* tls_config.c: Node-RED's "tls-config" config node: certificate, key and CA files for TLS
 * connections. Certificates uploaded through Node-RED's editor (stored as credentials,
 * certname/keyname/caname) are not supported: eddy reads files. */
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "node.h"
#include "tls_config.h"

static const eddy_prop tls_props[] = {
    {"cert", EDDY_PROP_STR, "\"\"", false, offsetof(tls_config, cert),
     "client certificate file (PEM)", NULL},
    {"key", EDDY_PROP_STR, "\"\"", false, offsetof(tls_config, key),
     "private key file of the certificate (PEM)", NULL},
    {"ca", EDDY_PROP_STR, "\"\"", false, offsetof(tls_config, ca),
     "CA certificate file (PEM); empty for the system's certificates", NULL},
    {"servername", EDDY_PROP_STR, "\"\"", false, offsetof(tls_config, servername),
     "server name for SNI", NULL},
    {"verifyservercert", EDDY_PROP_BOOL, "true", false, offsetof(tls_config, verifyservercert),
     "check the server's certificate", NULL},
    {0},
};

const tls_config *tls_config_of(eddy_node *tls_node)
{
    return eddy_node_state(tls_node);
}

static int tls_validate(const eddy_node_type *type, const json_t *config, void *state,
                        eddy_err *err)
{
    const tls_config *t = state;
    const char *files[] = {t->cert, t->key, t->ca};
    const char *names[] = {"cert", "key", "ca"};
    for (int i = 0; i < 3; i++)
        if (*files[i] && access(files[i], R_OK) != 0)
            return eddy_err_set(err, EDDY_ENOTFOUND, "%s file '%s' cannot be read", names[i],
                                files[i]);
    if (!*t->cert != !*t->key)
        return eddy_err_set(err, EDDY_EINVAL, "a client certificate needs both cert and key");
    const char *certname = json_string_value(json_object_get(config, "certname"));
    if (certname && *certname && !*t->cert)
        return eddy_err_set(err, EDDY_EUNSUPPORTED,
                            "uploaded certificates are not supported: give file paths");
    return EDDY_OK;
}

const eddy_node_type eddy_node_tls_config = {
    .name = "tls-config",
    .flags = EDDY_NODE_CONFIG,
    .props = tls_props,
    .state_size = sizeof(tls_config),
    .help = "TLS settings (certificate, key and CA files) shared by nodes that connect "
            "with TLS, such as mqtt-broker.",
    .validate = tls_validate,
};
