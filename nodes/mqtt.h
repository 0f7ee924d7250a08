/* mqtt.h: what the "mqtt in" and "mqtt out" nodes use of their "mqtt-broker" config node.
 * The broker node owns one libmosquitto client driven by eddy's loop (no thread of its
 * own): the socket is a libuv poll handle, keepalive a loop timer, and every write waits
 * for a flush hook, so the broker's acknowledgement of a message it gave eddy leaves only
 * after the flow has taken that message (and the event store committed what the flow
 * appended). See nodes/README.md, "MQTT", for the guarantees.
 *
 * Ownership: a user node registers in its setup and unregisters in its close; the broker
 * outlives its users (config nodes close last). Payload bytes passed in are copied. */
#ifndef EDDY_NODES_MQTT_H
#define EDDY_NODES_MQTT_H

#include <stdbool.h>
#include <stddef.h>

#include "node.h"

typedef struct mqtt_broker mqtt_broker;

/* One message from the broker, as libmosquitto gave it. Borrowed for the call. */
typedef struct mqtt_delivery {
    const char *topic;
    const void *payload;
    size_t len;
    int qos;
    bool retain;
    const char *content_type;     /* MQTT 5 property, NULL if absent */
    const char *response_topic;   /* MQTT 5, NULL if absent */
    json_t *user_properties;      /* MQTT 5, an object of strings, NULL if none; borrowed */
    int payload_format_indicator; /* MQTT 5: -1 absent, 0 bytes, 1 UTF-8 */
} mqtt_delivery;

/* Called for each message whose topic matches one of the node's subscriptions. 'token' is
 * what the node gave mqtt_broker_subscribe for that filter. */
typedef void (*mqtt_deliver_fn)(eddy_node *node, void *token, const mqtt_delivery *d);

/* The broker state behind a config node found through an EDDY_PROP_CONFIG property. */
mqtt_broker *mqtt_broker_of(eddy_node *broker_node);

/* Users get the connection state as their node status (connected, connecting,
 * disconnected) and are told about the outgoing queue. */
int mqtt_broker_register(mqtt_broker *b, eddy_node *user, eddy_err *err);
/* 'removed' (the node is deleted, not restarted): its subscriptions are also removed at
 * the broker, as Node-RED's autoUnsubscribe does. */
void mqtt_broker_unregister(mqtt_broker *b, eddy_node *user, bool removed);

/* Subscribes 'user' to 'filter' (MQTT wildcards + and #) at 'qos'. A filter the user
 * already has is replaced. Subscriptions are renewed on every reconnect. */
int mqtt_broker_subscribe(mqtt_broker *b, eddy_node *user, const char *filter, int qos,
                          mqtt_deliver_fn deliver, void *token, eddy_err *err);
/* Removes the user's subscription to 'filter' (all of them if 'filter' is NULL); the
 * broker is told only when no other user holds that filter. Returns how many were removed. */
int mqtt_broker_unsubscribe(mqtt_broker *b, eddy_node *user, const char *filter);

/* Publishes a copy of 'payload'. While the broker is unreachable, QoS 1 and 2 messages
 * wait in a bounded queue and leave in order after the reconnect; QoS 0 messages are
 * dropped then (at most once), counted in the log. Fails (EDDY_EFULL) when the queue is
 * at its bound, and (EDDY_EINVAL) for a topic that is empty or has wildcards. */
int mqtt_broker_publish(mqtt_broker *b, eddy_node *from, const char *topic, const void *payload,
                        size_t len, int qos, bool retain, eddy_err *err);

/* "connect" and "disconnect" actions (msg.action), as Node-RED's nodes accept them. */
void mqtt_broker_connect(mqtt_broker *b);
void mqtt_broker_disconnect(mqtt_broker *b);

bool mqtt_broker_connected(const mqtt_broker *b);
bool mqtt_broker_is_v5(const mqtt_broker *b);

/* True when 'filter' is a valid subscription filter / 'topic' a valid publish topic. */
bool mqtt_filter_valid(const char *filter);
bool mqtt_topic_valid(const char *topic);

#endif
