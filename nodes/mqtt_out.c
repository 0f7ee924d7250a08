/* mqtt_out.c: Node-RED's "mqtt out" node. Publishes msg.payload to the topic set on the node
 * or, if that is empty, msg.topic; QoS and retain likewise from the node or the message.
 * Payloads are sent as Node-RED sends them: strings as they are, a Buffer ({"type":"Buffer",
 * "data":[...]}) as its bytes, other objects and arrays as JSON, numbers and booleans as
 * their text, null as an empty payload. msg.action "connect"/"disconnect" drive the
 * broker connection.
 *
 * While the broker is unreachable, QoS 1/2 messages wait in the broker node's bounded queue
 * (Node-RED drops them); a message refused because that queue is full goes to catch. */
#include <stdio.h>
#include <string.h>

#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "node.h"

typedef struct mqtt_out {
    const char *topic;
    const char *qos;    /* "" = from msg.qos */
    const char *retain; /* "" = from msg.retain */
    eddy_node *broker;
    eddy_node *node;
    mqtt_broker *b;
} mqtt_out;

static const eddy_prop out_props[] = {
    {"topic", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_out, topic),
     "topic to publish to; empty: msg.topic", NULL},
    {"qos", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_out, qos),
     "QoS 0, 1 or 2; empty: msg.qos (default 0)", "||0|1|2|"},
    {"retain", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_out, retain),
     "\"true\" to retain; empty: msg.retain", NULL},
    {"broker", EDDY_PROP_CONFIG, NULL, true, offsetof(mqtt_out, broker), "the mqtt-broker node",
     "mqtt-broker"},
    {0},
};

/* msg.qos as Node-RED reads it: parseInt, anything but 0/1/2 counts as absent. */
static int message_qos(const mqtt_out *out, const json_t *msg)
{
    if (*out->qos)
        return out->qos[0] - '0';
    double q;
    const json_t *v = json_object_get(msg, "qos");
    if (v && eddy_json_parse_float(v, &q) && (q == 1 || q == 2))
        return (int)q;
    return 0;
}

static bool message_retain(const mqtt_out *out, const json_t *msg)
{
    /* Node-RED: node.retain || msg.retain, then true only for true or "true". */
    if (*out->retain)
        return strcmp(out->retain, "true") == 0;
    const json_t *v = json_object_get(msg, "retain");
    return json_is_true(v) || (json_is_string(v) && strcmp(json_string_value(v), "true") == 0);
}

/* The bytes to publish. Ownership: '*owned' is set when the bytes were allocated here. */
static const char *payload_bytes(const json_t *payload, size_t *len, char **owned)
{
    *owned = NULL;
    if (!payload || json_is_null(payload)) {
        *len = 0;
        return "";
    }
    if (json_is_string(payload)) {
        *len = json_string_length(payload);
        return json_string_value(payload);
    }
    unsigned char *bytes;
    if (eddy_buffer_bytes(payload, &bytes, len)) {
        *owned = (char *)bytes;
        return *owned;
    }
    *owned = json_is_object(payload) || json_is_array(payload)
                 ? eddy_json_dumps(payload, 0)
                 : eddy_json_to_string(payload, false);
    *len = *owned ? strlen(*owned) : 0;
    return *owned;
}

static void out_input(eddy_node *node, void *state, json_t *msg)
{
    mqtt_out *out = state;
    const char *action = json_string_value(json_object_get(msg, "action"));
    if (action) {
        if (strcmp(action, "connect") == 0)
            mqtt_broker_connect(out->b);
        else if (strcmp(action, "disconnect") == 0)
            mqtt_broker_disconnect(out->b);
        else
            eddy_node_error(node, msg, "Invalid action specified: '%s'", action);
        json_decref(msg);
        return;
    }
    const char *topic = *out->topic ? out->topic : json_string_value(json_object_get(msg, "topic"));
    if (!topic || !mqtt_topic_valid(topic)) {
        eddy_node_warn(node, "Invalid topic specified: %s",
                       topic ? topic : "msg.topic is not a string");
        json_decref(msg);
        return;
    }
    size_t len;
    char *owned;
    const char *bytes = payload_bytes(json_object_get(msg, "payload"), &len, &owned);
    eddy_err err;
    eddy_err_clear(&err);
    if (!bytes)
        eddy_node_error(node, msg, "out of memory encoding the payload");
    else if (mqtt_broker_publish(out->b, node, topic, bytes, len, message_qos(out, msg),
                                 message_retain(out, msg), &err) != EDDY_OK)
        eddy_node_error(node, msg, "%s", err.msg);
    eddy_free(owned);
    json_decref(msg);
}

static int out_validate(const eddy_node_type *type, const json_t *config, void *state,
                        eddy_err *err)
{
    mqtt_out *out = state;
    if (*out->topic && !mqtt_topic_valid(out->topic))
        return eddy_err_set(err, EDDY_EINVAL, "topic '%s' cannot be published to (+ or #)",
                            out->topic);
    if (*out->retain && strcmp(out->retain, "true") && strcmp(out->retain, "false"))
        return eddy_err_set(err, EDDY_EINVAL, "retain '%s' is not \"true\", \"false\" or \"\"",
                            out->retain);
    return EDDY_OK;
}

static int out_setup(eddy_node *node, void *state, eddy_err *err)
{
    mqtt_out *out = state;
    out->node = node;
    out->b = mqtt_broker_of(out->broker);
    return mqtt_broker_register(out->b, node, err);
}

static int out_close(eddy_node *node, void *state, bool removed)
{
    mqtt_out *out = state;
    mqtt_broker_unregister(out->b, node, removed);
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_mqtt_out = {
    .name = "mqtt out",
    .inputs = 1,
    .outputs = 0,
    .props = out_props,
    .state_size = sizeof(mqtt_out),
    .help = "Publishes msg.payload to an MQTT broker, on the node's topic or msg.topic. While "
            "the broker is unreachable, QoS 1/2 messages wait in a bounded queue and are sent "
            "in order on reconnect.",
    .validate = out_validate,
    .setup = out_setup,
    .input = out_input,
    .close = out_close,
};
