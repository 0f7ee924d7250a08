/* mqtt_in.c: Node-RED's "mqtt in" node. Subscribes through its mqtt-broker config node and
 * sends each message on: msg.topic, msg.qos, msg.retain and msg.payload decoded as the
 * 'datatype' property says (auto-detect, auto, utf8, json, buffer, base64). With one input
 * (inputs: 1) it subscribes dynamically: msg.action "subscribe", "unsubscribe",
 * "getSubscriptions", "connect", "disconnect", as Node-RED's node does.
 *
 * Binary payloads are JSON here: Node.js's Buffer in its JSON form, {"type":"Buffer",
 * "data":[...]}. A payload that cannot be decoded as JSON when JSON is asked for goes to
 * catch nodes (msg with the text as payload), and nothing is sent. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "node.h"

/* A dynamic subscription, kept so unsubscribe and getSubscriptions know it. */
typedef struct mqtt_in_sub {
    char *topic;
    int qos;
    char *datatype; /* NULL: the node's */
    struct mqtt_in_sub *next;
} mqtt_in_sub;

typedef struct mqtt_in {
    const char *topic;
    double qos;
    const char *datatype;
    eddy_node *broker;
    double inputs;
    eddy_node *node;
    mqtt_broker *b;
    bool dynamic;
    mqtt_in_sub *dyn; /* dynamic subscriptions, newest last */
} mqtt_in;

static const eddy_prop in_props[] = {
    {"topic", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_in, topic),
     "topic filter (+ matches one level, # the rest); empty with dynamic subscriptions", NULL},
    {"qos", EDDY_PROP_NUM, "2", false, offsetof(mqtt_in, qos), "QoS: 0, 1 or 2", NULL},
    {"datatype", EDDY_PROP_STR, "\"utf8\"", false, offsetof(mqtt_in, datatype),
     "payload as: auto-detect (JSON, string or buffer), auto (string or buffer), utf8, json, "
     "buffer, base64",
     "|auto-detect|auto|utf8|json|buffer|base64|"},
    {"broker", EDDY_PROP_CONFIG, NULL, true, offsetof(mqtt_in, broker), "the mqtt-broker node",
     "mqtt-broker"},
    {"inputs", EDDY_PROP_NUM, "0", false, offsetof(mqtt_in, inputs),
     "1: subscriptions come from input messages (msg.action)", NULL},
    {0},
};

/* ---- decoding a payload ---- */

/* Media types an MQTT 5 content type maps to, as Node-RED's node knows them. */
static const char *media_kind(const char *content_type)
{
    if (!content_type || !*content_type)
        return NULL;
    static const struct {
        const char *type, *kind;
    } known[] = {
        {"text/css", "string"},        {"text/html", "string"},
        {"text/plain", "string"},      {"text/csv", "string"},
        {"text/xml", "string"},        {"application/json", "json"},
        {"application/xml", "string"}, {"application/octet-stream", "buffer"},
    };
    for (size_t i = 0; i < sizeof(known) / sizeof(known[0]); i++)
        if (strcasecmp(content_type, known[i].type) == 0)
            return known[i].kind;
    size_t n = strlen(content_type);
    if (n > 5 && strcasecmp(content_type + n - 5, "+json") == 0)
        return "json";
    return NULL;
}

static json_t *as_string(const mqtt_delivery *d)
{
    size_t n;
    char *text = eddy_utf8_decode(d->payload, d->len, &n);
    json_t *s = text ? json_stringn_nocheck(text, n) : NULL;
    eddy_free(text);
    return s;
}

/* Reports a payload that should have been JSON and was not; the message to catch carries
 * what Node-RED's does: the text (or bytes), topic, qos, retain. */
static void json_failure(mqtt_in *in, const mqtt_delivery *d, bool utf8, const char *why)
{
    json_t *msg = eddy_msg_new();
    json_object_set_new(msg, "payload", utf8 ? as_string(d) : eddy_buffer_json(d->payload, d->len));
    json_object_set_new(msg, "topic", json_string(d->topic));
    json_object_set_new(msg, "qos", json_integer(d->qos));
    json_object_set_new(msg, "retain", json_boolean(d->retain));
    eddy_node_error(in->node, msg, "%s (topic '%s', %zu bytes): %s",
                    utf8 ? "Failed to parse JSON string" : "Invalid JSON string", d->topic, d->len,
                    why);
    json_decref(msg);
}

/* The payload as 'datatype' says; NULL after a reported failure. */
static json_t *decode_payload(mqtt_in *in, const char *datatype, const mqtt_delivery *d)
{
    if (strcmp(datatype, "buffer") == 0)
        return eddy_buffer_json(d->payload, d->len);
    if (strcmp(datatype, "base64") == 0) {
        char *text = eddy_base64_encode(d->payload, d->len);
        json_t *s = text ? json_string(text) : NULL;
        eddy_free(text);
        return s;
    }
    if (strcmp(datatype, "utf8") == 0)
        return as_string(d);
    bool utf8 = d->payload_format_indicator == 1 || eddy_utf8_valid(d->payload, d->len);
    bool want_json = strcmp(datatype, "json") == 0;
    const char *kind = media_kind(d->content_type);
    if (!want_json && kind && strcmp(kind, "buffer") == 0)
        return eddy_buffer_json(d->payload, d->len);
    if (!want_json && kind && strcmp(kind, "string") == 0)
        return as_string(d);
    bool must_parse = want_json || (kind && strcmp(kind, "json") == 0);
    if (!utf8) {
        if (must_parse) {
            json_failure(in, d, false, "not UTF-8 text");
            return NULL;
        }
        return eddy_buffer_json(d->payload, d->len);
    }
    bool try_parse = must_parse || strcmp(datatype, "auto-detect") == 0;
    if (try_parse) {
        eddy_err err;
        eddy_err_clear(&err);
        json_t *v = eddy_json_loadb(d->payload, d->len, &err);
        if (v && (want_json || strcmp(datatype, "auto-detect") == 0))
            return v;
        json_decref(v);
        if (!v && must_parse) {
            json_failure(in, d, true, err.msg);
            return NULL;
        }
    }
    return as_string(d);
}

static void set_v5_properties(json_t *msg, const mqtt_delivery *d)
{
    if (d->content_type)
        json_object_set_new(msg, "contentType", json_string(d->content_type));
    if (d->response_topic)
        json_object_set_new(msg, "responseTopic", json_string(d->response_topic));
    if (d->user_properties)
        json_object_set_new(msg, "userProperties", json_deep_copy(d->user_properties));
    if (d->payload_format_indicator >= 0)
        json_object_set_new(msg, "payloadFormatIndicator",
                            json_boolean(d->payload_format_indicator == 1));
}

static void deliver(eddy_node *node, void *token, const mqtt_delivery *d)
{
    mqtt_in *in = eddy_node_state(node);
    const mqtt_in_sub *dyn = token;
    const char *datatype = dyn && dyn->datatype ? dyn->datatype : in->datatype;
    json_t *payload = decode_payload(in, datatype, d);
    if (!payload)
        return;
    json_t *msg = eddy_msg_new();
    json_object_set_new(msg, "topic", json_string(d->topic));
    json_object_set_new(msg, "payload", payload);
    json_object_set_new(msg, "qos", json_integer(d->qos));
    json_object_set_new(msg, "retain", json_boolean(d->retain));
    if (mqtt_broker_is_v5(in->b))
        set_v5_properties(msg, d);
    eddy_node_send(node, 0, msg);
}

/* ---- dynamic subscriptions ---- */

static void dyn_free(mqtt_in_sub *s)
{
    eddy_free(s->topic);
    eddy_free(s->datatype);
    eddy_free(s);
}

static void dyn_remove(mqtt_in *in, const char *topic)
{
    for (mqtt_in_sub **p = &in->dyn; *p; p = &(*p)->next) {
        if (strcmp((*p)->topic, topic) == 0) {
            mqtt_in_sub *s = *p;
            *p = s->next;
            mqtt_broker_unsubscribe(in->b, in->node, topic);
            dyn_free(s);
            return;
        }
    }
}

static json_t *dyn_list(const mqtt_in *in)
{
    json_t *list = json_array();
    for (const mqtt_in_sub *s = in->dyn; s; s = s->next) {
        json_t *o = json_pack("{s:s, s:i}", "topic", s->topic, "qos", s->qos);
        if (s->datatype)
            json_object_set_new(o, "datatype", json_string(s->datatype));
        json_array_append_new(list, o);
    }
    return list;
}

/* One entry of msg.topic for subscribe: "filter" or {topic, qos, datatype}. */
static int dyn_subscribe(mqtt_in *in, const json_t *entry, eddy_err *err)
{
    const json_t *t = json_is_object(entry) ? json_object_get(entry, "topic") : entry;
    const char *topic = json_string_value(t);
    if (!mqtt_filter_valid(topic))
        return eddy_err_set(err, EDDY_EINVAL, "Invalid topic specified: '%s'",
                            topic ? topic : "(not a string)");
    int qos = 2; /* as Node-RED: the mqtt in node's default */
    const char *datatype = NULL;
    if (json_is_object(entry)) {
        double q;
        const json_t *qv = json_object_get(entry, "qos");
        if (qv && eddy_json_parse_float(qv, &q) && (q == 0 || q == 1 || q == 2))
            qos = (int)q;
        datatype = json_string_value(json_object_get(entry, "datatype"));
    }
    dyn_remove(in, topic);
    mqtt_in_sub *s = eddy_calloc(1, sizeof(*s));
    if (!s || !(s->topic = eddy_strdup(topic)) ||
        (datatype && !(s->datatype = eddy_strdup(datatype)))) {
        if (s)
            dyn_free(s);
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    s->qos = qos;
    if (mqtt_broker_subscribe(in->b, in->node, topic, qos, deliver, s, err) != EDDY_OK) {
        dyn_free(s);
        return err->code;
    }
    mqtt_in_sub **tail = &in->dyn;
    while (*tail)
        tail = &(*tail)->next;
    *tail = s;
    return EDDY_OK;
}

static int dyn_action(mqtt_in *in, const char *action, json_t *msg, eddy_err *err)
{
    const json_t *topic = json_object_get(msg, "topic");
    bool unsubscribe = strcmp(action, "unsubscribe") == 0;
    if (unsubscribe && json_is_true(topic)) {
        while (in->dyn)
            dyn_remove(in, in->dyn->topic);
    } else if (json_is_array(topic) || json_is_string(topic) || json_is_object(topic)) {
        size_t n = json_is_array(topic) ? json_array_size(topic) : 1;
        for (size_t i = 0; i < n; i++) {
            const json_t *entry = json_is_array(topic) ? json_array_get(topic, i) : topic;
            if (unsubscribe) {
                const json_t *t = json_is_object(entry) ? json_object_get(entry, "topic") : entry;
                if (!json_is_string(t))
                    return eddy_err_set(err, EDDY_EINVAL, "Invalid topic specified");
                dyn_remove(in, json_string_value(t));
            } else if (dyn_subscribe(in, entry, err) != EDDY_OK) {
                return err->code;
            }
        }
    } else {
        return eddy_err_set(err, EDDY_EINVAL, "msg.topic is missing or invalid");
    }
    json_object_set_new(msg, "subscriptions", dyn_list(in));
    return EDDY_OK;
}

static void in_input(eddy_node *node, void *state, json_t *msg)
{
    mqtt_in *in = state;
    eddy_err err;
    eddy_err_clear(&err);
    const char *action = json_string_value(json_object_get(msg, "action"));
    if (!action) {
        eddy_node_error(node, msg,
                        "Invalid action specified: msg.action must be subscribe, "
                        "unsubscribe, getSubscriptions, connect or disconnect");
    } else if (strcmp(action, "subscribe") == 0 || strcmp(action, "unsubscribe") == 0) {
        if (dyn_action(in, action, msg, &err) != EDDY_OK)
            eddy_node_error(node, msg, "%s", err.msg);
    } else if (strcmp(action, "getSubscriptions") == 0) {
        json_object_set_new(msg, "topic", json_string("subscriptions"));
        json_object_set_new(msg, "payload", dyn_list(in));
        eddy_node_send(node, 0, msg);
        return;
    } else if (strcmp(action, "connect") == 0) {
        mqtt_broker_connect(in->b);
    } else if (strcmp(action, "disconnect") == 0) {
        mqtt_broker_disconnect(in->b);
    } else {
        eddy_node_error(node, msg, "Invalid action specified: '%s'", action);
    }
    json_decref(msg);
}

/* ---- life cycle ---- */

static int in_validate(const eddy_node_type *type, const json_t *config, void *state, eddy_err *err)
{
    mqtt_in *in = state;
    if (in->qos != 0 && in->qos != 1 && in->qos != 2)
        return eddy_err_set(err, EDDY_EINVAL, "qos %g is not 0, 1 or 2", in->qos);
    if ((int)in->inputs != 1 && !mqtt_filter_valid(in->topic))
        return eddy_err_set(err, EDDY_EINVAL,
                            "topic '%s' is not a valid topic filter (empty, or + and # not "
                            "whole levels)",
                            in->topic);
    return EDDY_OK;
}

static int in_setup(eddy_node *node, void *state, eddy_err *err)
{
    mqtt_in *in = state;
    in->node = node;
    in->b = mqtt_broker_of(in->broker);
    in->dynamic = (int)in->inputs == 1;
    if (mqtt_broker_register(in->b, node, err) != EDDY_OK)
        return err->code;
    if (!in->dynamic && mqtt_broker_subscribe(in->b, node, in->topic, (int)in->qos, deliver, NULL,
                                              err) != EDDY_OK) {
        mqtt_broker_unregister(in->b, node, false);
        return err->code;
    }
    return EDDY_OK;
}

static int in_close(eddy_node *node, void *state, bool removed)
{
    mqtt_in *in = state;
    mqtt_broker_unregister(in->b, node, removed);
    while (in->dyn) {
        mqtt_in_sub *s = in->dyn;
        in->dyn = s->next;
        dyn_free(s);
    }
    return EDDY_CLOSE_DONE;
}

const eddy_node_type eddy_node_mqtt_in = {
    .name = "mqtt in",
    .inputs = 1, /* used only with inputs: 1 (dynamic subscriptions) */
    .outputs = 1,
    .props = in_props,
    .state_size = sizeof(mqtt_in),
    .help = "Receives messages from an MQTT broker: msg.topic, msg.payload, msg.qos, "
            "msg.retain. The broker's acknowledgement of a QoS 1/2 message is sent after the "
            "flow took it. With inputs: 1, msg.action subscribe/unsubscribe/getSubscriptions "
            "changes the subscriptions at run time.",
    .validate = in_validate,
    .setup = in_setup,
    .input = in_input,
    .close = in_close,
};
