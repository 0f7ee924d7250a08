/* mqtt_broker.c: Node-RED's "mqtt-broker" config node: one MQTT connection shared by the
 * "mqtt in" and "mqtt out" nodes that name it, driven by eddy's loop.
 *
 * How libmosquitto runs here. The client is marked threaded (mosquitto_threaded_set), which
 * in libmosquitto 2.0 means it never writes on its own: every packet it queues (PUBACK,
 * PUBLISH, PINGREQ, DISCONNECT) waits until we call mosquitto_loop_write. Reading happens
 * from a libuv poll handle on its socket, keepalive from a one-second loop timer. So:
 *
 *   socket readable -> mosquitto_loop_read -> on_message -> "mqtt in" sends into the flow;
 *                      libmosquitto has queued the PUBACK, which is not written yet
 *   the engine runs the flow; the event store appends and commits (before-sleep hook)
 *   flush hook (loop settled: run queue empty, no commit pending) -> mosquitto_loop_write
 *
 * Until a QoS 1/2 message read from the socket has been settled, nothing is written (the
 * 'unsettled' flag); outgoing publishes wait with the acknowledgements, which keeps the
 * order of the one outgoing packet queue. If eddy dies before the flush, the broker still
 * holds the message as unacknowledged and delivers it again (persistent session).
 *
 * Connection life: down -> connecting -> up, and back to down on loss; retries back off from
 * reconnectMin to reconnectMax ms. While down, QoS 1/2 publishes wait in eddy's bounded
 * queue (outQueueLimit messages, outQueueBytes bytes) and leave in order after the
 * reconnect, once libmosquitto has resent what was in flight. */
#include <errno.h>
#include <mosquitto.h>
#include <mqtt_protocol.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <uv.h>

#include "log.h"
#include "mem.h"
#include "mqtt.h"
#include "msg.h"
#include "node.h"
#include "tls_config.h"

/* Packets read per loop turn. The engine runs 1024 deliveries a turn; if what is read
 * makes more, the run queue grows to its bound and every message goes cold in the cache. */
#define READ_BATCH 64
/* While input is dense, the socket wakes the loop only once this much is waiting (or when
 * the coalescing timer reads what is there): about 90 readings of 180 bytes. */
#define COALESCE_BYTES     16384
#define MISC_INTERVAL_MS   1000      /* keepalive check */
#define CLOSE_TIMEOUT_MS   3000      /* how long close waits for the DISCONNECT to be written */
#define CONNECT_TIMEOUT_MS 10000     /* TCP, TLS and CONNACK together, independent of keepalive */
#define MQTT_PAYLOAD_MAX   268435455 /* the largest remaining length MQTT can express */

typedef enum mqtt_conn { MQTT_DOWN, MQTT_CONNECTING, MQTT_UP } mqtt_conn;

typedef struct mqtt_user {
    eddy_node *node;
    struct mqtt_user *next;
} mqtt_user;

typedef struct mqtt_sub {
    char *filter;
    int qos;
    eddy_node *user;
    mqtt_deliver_fn deliver;
    void *token;
    struct mqtt_sub *next;
} mqtt_sub;

/* An outgoing message waiting for a connection; payload bytes follow the struct. */
typedef struct mqtt_pending {
    struct mqtt_pending *next;
    char *topic;
    size_t len;
    int qos;
    bool retain;
    unsigned char payload[];
} mqtt_pending;

struct mqtt_broker {
    /* properties (Node-RED's names; the last four are eddy's) */
    const char *broker;
    double port;
    const char *clientid;
    bool autoConnect;
    bool usetls;
    eddy_node *tls;
    double protocolVersion;
    double keepalive;
    bool cleansession;
    bool autoUnsubscribe;
    double sessionExpiry;
    const char *birthTopic, *birthPayload, *closeTopic, *closePayload, *willTopic, *willPayload;
    double birthQos, closeQos, willQos;
    bool birthRetain, closeRetain, willRetain;
    long outQueueLimit;
    long outQueueBytes;
    long reconnectMin;
    long reconnectMax;
    long readCoalesce;

    /* run time */
    eddy_node *node;
    eddy_loop *loop;
    struct mosquitto *mosq;
    char *host;      /* from 'broker', without scheme and port; owned */
    int port_number; /* from 'port' or the broker URL */
    char *label;     /* "clientid@host:port" for the log; owned */
    uv_poll_t *poll; /* on the current socket; NULL while there is none */
    int poll_events;
    eddy_timer *misc_timer, *retry_timer, *drain_timer, *close_timer, *connect_timer;
    mqtt_conn conn;
    bool connect_started; /* mosquitto_connect_async has run once */
    bool wanted;          /* should be connected (false after a "disconnect" action) */
    bool closing;
    bool close_done;
    bool read_paused;  /* back-pressure, or closing */
    bool unsettled;    /* a QoS 1/2 message was read and the flow has not settled since */
    bool read_message; /* on_message ran during the current mosquitto_loop_read */
    int batch_left;    /* messages the current read_in may still take */
    bool input_left;   /* the last read_in stopped with input waiting */
    /* Read coalescing (see "dense input" below) */
    bool coalescing;       /* SO_RCVLOWAT is raised and coalesce_timer reads what is below */
    bool in_coalesce_tick; /* coalesce_tick is on the stack */
    bool read_since_tick;  /* a message was read since the last coalesce_tick */
    uint64_t last_read_ns; /* start of the last read turn that delivered a message */
    eddy_timer *coalesce_timer;
    int64_t backoff_ms;
    int last_connack;    /* refusal reason of the last attempt, for the log */
    int last_connect_rc; /* libmosquitto's error of the last failed attempt, for the log */
    mqtt_user *users;
    mqtt_sub *subs;
    mqtt_pending *queue_head, *queue_tail;
    size_t queue_count, queue_bytes;
    uint64_t dropped_qos0; /* QoS 0 publishes dropped during the current outage */
    size_t in_flight;      /* QoS 1/2 publishes handed to libmosquitto, not yet acknowledged */
    unsigned char mids[65536 / 8]; /* which message ids those are (a bit each) */
    bool queue_full_said;          /* the bound was reported during the current outage */
};

static const eddy_prop broker_props[] = {
    {"broker", EDDY_PROP_STR, NULL, true, offsetof(mqtt_broker, broker),
     "broker host name or address (or mqtt://host:port, mqtts://host:port)", NULL},
    {"port", EDDY_PROP_NUM, "1883", false, offsetof(mqtt_broker, port), "broker port", NULL},
    {"clientid", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_broker, clientid),
     "client id; generated when empty (a persistent session needs one)", NULL},
    {"autoConnect", EDDY_PROP_BOOL, "true", false, offsetof(mqtt_broker, autoConnect),
     "connect at start (else on a \"connect\" action)", NULL},
    {"usetls", EDDY_PROP_BOOL, "false", false, offsetof(mqtt_broker, usetls),
     "connect with TLS, configured by the 'tls' config node", NULL},
    {"tls", EDDY_PROP_CONFIG, NULL, false, offsetof(mqtt_broker, tls),
     "tls-config node with CA, certificate and key files", "tls-config"},
    {"protocolVersion", EDDY_PROP_NUM, "4", false, offsetof(mqtt_broker, protocolVersion),
     "MQTT protocol: 3 (3.1), 4 (3.1.1) or 5", NULL},
    {"keepalive", EDDY_PROP_NUM, "60", false, offsetof(mqtt_broker, keepalive),
     "keepalive in seconds", NULL},
    {"cleansession", EDDY_PROP_BOOL, "true", false, offsetof(mqtt_broker, cleansession),
     "start a clean session (false keeps subscriptions and queued QoS 1/2 messages)", NULL},
    {"autoUnsubscribe", EDDY_PROP_BOOL, "true", false, offsetof(mqtt_broker, autoUnsubscribe),
     "unsubscribe at the broker when an mqtt in node is deleted", NULL},
    {"sessionExpiry", EDDY_PROP_NUM, "0", false, offsetof(mqtt_broker, sessionExpiry),
     "MQTT 5 session expiry interval in seconds", NULL},
    {"birthTopic", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_broker, birthTopic),
     "topic published on connect", NULL},
    {"birthPayload", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_broker, birthPayload), NULL, NULL},
    {"birthQos", EDDY_PROP_NUM, "0", false, offsetof(mqtt_broker, birthQos), NULL, NULL},
    {"birthRetain", EDDY_PROP_BOOL, "false", false, offsetof(mqtt_broker, birthRetain), NULL, NULL},
    {"closeTopic", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_broker, closeTopic),
     "topic published before a clean disconnect", NULL},
    {"closePayload", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_broker, closePayload), NULL, NULL},
    {"closeQos", EDDY_PROP_NUM, "0", false, offsetof(mqtt_broker, closeQos), NULL, NULL},
    {"closeRetain", EDDY_PROP_BOOL, "false", false, offsetof(mqtt_broker, closeRetain), NULL, NULL},
    {"willTopic", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_broker, willTopic),
     "topic the broker publishes if eddy disappears", NULL},
    {"willPayload", EDDY_PROP_STR, "\"\"", false, offsetof(mqtt_broker, willPayload), NULL, NULL},
    {"willQos", EDDY_PROP_NUM, "0", false, offsetof(mqtt_broker, willQos), NULL, NULL},
    {"willRetain", EDDY_PROP_BOOL, "false", false, offsetof(mqtt_broker, willRetain), NULL, NULL},
    {"outQueueLimit", EDDY_PROP_INT, "10000", false, offsetof(mqtt_broker, outQueueLimit),
     "eddy: QoS 1/2 messages kept for mqtt out while the broker is unreachable", NULL},
    {"outQueueBytes", EDDY_PROP_INT, "16777216", false, offsetof(mqtt_broker, outQueueBytes),
     "eddy: payload bytes kept for mqtt out while the broker is unreachable", NULL},
    {"reconnectMin", EDDY_PROP_INT, "500", false, offsetof(mqtt_broker, reconnectMin),
     "eddy: first reconnect delay in ms (doubles up to reconnectMax)", NULL},
    {"reconnectMax", EDDY_PROP_INT, "10000", false, offsetof(mqtt_broker, reconnectMax),
     "eddy: longest reconnect delay in ms", NULL},
    {"readCoalesce", EDDY_PROP_INT, "1", false, offsetof(mqtt_broker, readCoalesce),
     "eddy: ms a dense stream of messages may wait to be read together (0: read each at once)",
     NULL},
    {0},
};

static void poll_update(mqtt_broker *b);
static void read_in(mqtt_broker *b);
static void stop_coalescing(mqtt_broker *b);
static void start_connect(mqtt_broker *b);
static void link_down(mqtt_broker *b, int rc, const char *why);
static void schedule_drain(mqtt_broker *b);
static int64_t close_now(eddy_loop *loop, eddy_timer *timer, void *data);

/* ---- topics ---- */

/* MQTT topics are UTF-8 without U+0000 (libmosquitto also refuses control characters);
 * a topic the broker would refuse must not reach the outgoing queue. */
static bool topic_text_ok(const char *t)
{
    return t && *t && mosquitto_validate_utf8(t, (int)strlen(t)) == MOSQ_ERR_SUCCESS;
}

bool mqtt_filter_valid(const char *filter)
{
    return topic_text_ok(filter) && mosquitto_sub_topic_check(filter) == MOSQ_ERR_SUCCESS;
}

bool mqtt_topic_valid(const char *topic)
{
    return topic_text_ok(topic) && mosquitto_pub_topic_check(topic) == MOSQ_ERR_SUCCESS;
}

/* "$share/group/filter" subscriptions receive topics matching 'filter'. */
static const char *shared_filter_target(const char *filter)
{
    if (strncmp(filter, "$share/", 7) != 0)
        return filter;
    const char *slash = strchr(filter + 7, '/');
    return slash ? slash + 1 : filter;
}

static bool filter_matches(const char *filter, const char *topic)
{
    bool result = false;
    return mosquitto_topic_matches_sub(shared_filter_target(filter), topic, &result) ==
               MOSQ_ERR_SUCCESS &&
           result;
}

/* ---- status of the users ---- */

static void users_status(mqtt_broker *b, const char *fill, const char *shape, const char *text)
{
    for (mqtt_user *u = b->users; u; u = u->next)
        eddy_node_set_status(u->node, fill, shape, text);
}

static void status_for_conn(mqtt_broker *b, eddy_node *only)
{
    const char *fill = "red", *shape = "ring", *text = "node-red:common.status.disconnected";
    if (b->conn == MQTT_UP) {
        fill = "green";
        shape = "dot";
        text = "node-red:common.status.connected";
    } else if (b->conn == MQTT_CONNECTING) {
        fill = "yellow";
        text = "node-red:common.status.connecting";
    }
    if (only)
        eddy_node_set_status(only, fill, shape, text);
    else
        users_status(b, fill, shape, text);
}

/* ---- the socket on the loop ---- */

static void free_poll_handle(uv_handle_t *handle)
{
    eddy_free(handle);
}

static void unwatch_socket(mqtt_broker *b)
{
    if (!b->poll)
        return;
    stop_coalescing(b);
    b->last_read_ns = 0;
    uv_poll_stop(b->poll);
    uv_close((uv_handle_t *)b->poll, free_poll_handle);
    b->poll = NULL;
    b->poll_events = 0;
}

/* libmosquitto closes its socket without calling on_disconnect on some paths (a failed
 * TLS handshake, an EOF during it): after each call into it, a socket that is gone means
 * the link is down. */
static void check_link(mqtt_broker *b, int rc)
{
    if (b->poll && mosquitto_socket(b->mosq) < 0)
        link_down(b, rc, rc == MOSQ_ERR_SUCCESS ? "connection closed" : mosquitto_strerror(rc));
}

/* Writes what libmosquitto has queued; callers have checked it is allowed. One call
 * writes every queued packet until the socket is full (then the poll handle waits). */
static void write_out(mqtt_broker *b)
{
    if (!b->poll || !mosquitto_want_write(b->mosq))
        return;
    check_link(b, mosquitto_loop_write(b->mosq, 1));
}

/* true when nothing more is waiting on the socket, after a mosquitto_loop_read that left
 * 'read_errno'. errno alone cannot tell: libmosquitto writes a byte to an internal wake-up
 * pipe for every packet it queues (the PUBACK of a QoS 1 message, before on_message), and
 * once that pipe is full it leaves EAGAIN behind. So EAGAIN counts only from a read that
 * delivered no message; asking the kernel (FIONREAD) would cost a system call per message.
 * Stopping early is harmless: the poll handle is level-triggered. With TLS, libmosquitto
 * drains what OpenSSL buffered itself, so one read per event is enough. */
static bool socket_drained(const mqtt_broker *b, int read_errno)
{
    return b->usetls || ((read_errno == EAGAIN || read_errno == EWOULDBLOCK) && !b->read_message);
}

/* Reads up to READ_BATCH messages (on_message counts them down) and says whether it
 * stopped with input waiting: at the limit or at a full run queue. The loop is told, so
 * that a group commit can take that input in too. */
static bool read_batch(mqtt_broker *b)
{
    b->batch_left = READ_BATCH;
    for (int i = 0; i < READ_BATCH && b->batch_left > 0 && b->poll && !b->read_paused; i++) {
        if (eddy_node_backlogged(b->node)) {
            b->read_paused = true; /* resumed by on_drain */
            eddy_loop_note_input_left(b->loop);
            return true;
        }
        errno = 0;
        b->read_message = false;
        int rc = mosquitto_loop_read(b->mosq, 1);
        int read_errno = errno;
        check_link(b, rc);
        if (rc != MOSQ_ERR_SUCCESS || !b->poll || socket_drained(b, read_errno))
            return false;
    }
    if (!b->poll || b->read_paused)
        return false;
    eddy_loop_note_input_left(b->loop);
    return true;
}

/* ---- dense input: read coalescing ----
 *
 * A client that keeps up with its broker wakes for almost every packet: in a burst that
 * reads 1.4 packets per wake-up, and the wake-up (poll, a read that finds the socket
 * empty, the scheduler) costs more than the packets. So when read turns with messages
 * come less than readCoalesce ms apart, the socket's receive low-water mark is raised:
 * the loop then wakes when COALESCE_BYTES are waiting, and a readCoalesce ms timer reads
 * whatever is below that. A tick that finds no message since the one before ends it, so a
 * message after a quiet spell is read at once. Like Kafka's fetch.min.bytes and
 * fetch.max.wait.ms: a message may wait up to readCoalesce ms. Not with TLS (its reads
 * drain OpenSSL's buffer, which the low-water mark does not see). */

static void set_low_water(mqtt_broker *b, int bytes)
{
    int fd = mosquitto_socket(b->mosq);
    if (fd >= 0)
        (void)setsockopt(fd, SOL_SOCKET, SO_RCVLOWAT, &bytes, sizeof bytes);
}

static int64_t coalesce_tick(eddy_loop *loop, eddy_timer *timer, void *data)
{
    mqtt_broker *b = data;
    if (b->read_paused) /* the flow is behind: on_drain reads on */
        return b->readCoalesce;
    bool quiet = !b->read_since_tick;
    b->read_since_tick = false;
    b->in_coalesce_tick = true;
    read_in(b);
    b->in_coalesce_tick = false;
    if (!b->coalescing) /* the link went down while reading */
        return EDDY_TIMER_STOP;
    if (quiet && !b->read_since_tick) {
        stop_coalescing(b);
        return EDDY_TIMER_STOP;
    }
    poll_update(b);
    return b->input_left && !b->read_paused ? 0 : b->readCoalesce;
}

static void start_coalescing(mqtt_broker *b)
{
    b->coalesce_timer = eddy_timer_start(b->loop, b->readCoalesce, coalesce_tick, b, NULL);
    if (!b->coalesce_timer)
        return; /* out of memory: read each packet at once, as without coalescing */
    b->coalescing = true;
    b->read_since_tick = true;
    set_low_water(b, COALESCE_BYTES);
}

static void stop_coalescing(mqtt_broker *b)
{
    if (!b->coalescing)
        return;
    b->coalescing = false;
    eddy_timer_stop(b->loop, b->coalesce_timer);
    b->coalesce_timer = NULL;
    set_low_water(b, 1);
}

/* Input below the low-water mark is waiting (a read turn stopped at its limit, or the
 * flow caught up): read it on the next loop turn rather than at the next tick. */
static void coalesce_read_soon(mqtt_broker *b)
{
    if (!b->coalescing || b->in_coalesce_tick)
        return;
    eddy_timer_stop(b->loop, b->coalesce_timer);
    b->coalesce_timer = eddy_timer_start(b->loop, 0, coalesce_tick, b, NULL);
    if (!b->coalesce_timer) { /* out of memory: the socket wakes the loop again */
        b->coalescing = false;
        set_low_water(b, 1);
    }
}

static void read_in(mqtt_broker *b)
{
    uint64_t started = uv_hrtime();
    b->input_left = read_batch(b);
    if (b->batch_left == READ_BATCH || !b->poll) /* no message read */
        return;
    if (!b->coalescing && b->readCoalesce > 0 && !b->usetls) {
        bool dense =
            b->last_read_ns && started - b->last_read_ns < (uint64_t)b->readCoalesce * 1000000;
        b->last_read_ns = started;
        if (dense)
            start_coalescing(b);
    }
    if (b->input_left)
        coalesce_read_soon(b);
}

static void on_poll(uv_poll_t *handle, int status, int events)
{
    mqtt_broker *b = handle->data;
    if (status < 0) {
        b->poll_events = 0; /* libuv stopped the handle; the calls below find the error */
        events = UV_READABLE | UV_WRITABLE;
    }
    /* The TLS handshake moves on in libmosquitto's read call, whichever way it waits. */
    if (b->usetls && b->conn == MQTT_CONNECTING)
        check_link(b, mosquitto_loop_read(b->mosq, 1));
    /* Write before reading: what is queued now was settled when the flush hook allowed
     * it; acknowledgements of what we are about to read must wait for the next flush. */
    if ((events & UV_WRITABLE) && !b->unsettled)
        write_out(b);
    if (b->poll && (events & UV_READABLE))
        read_in(b);
    poll_update(b);
}

static void poll_update(mqtt_broker *b)
{
    if (!b->poll)
        return;
    int want = b->read_paused ? 0 : UV_READABLE;
    if (!b->unsettled && mosquitto_want_write(b->mosq))
        want |= UV_WRITABLE;
    if (want == b->poll_events)
        return;
    b->poll_events = want;
    if (want)
        uv_poll_start(b->poll, want, on_poll);
    else
        uv_poll_stop(b->poll);
}

static int watch_socket(mqtt_broker *b, eddy_err *err)
{
    int fd = mosquitto_socket(b->mosq);
    uv_loop_t *uv = eddy_loop_uv(b->loop);
    if (fd < 0 || !uv)
        return eddy_err_set(err, EDDY_EIO, "no socket to watch");
    b->poll = eddy_malloc(sizeof(*b->poll));
    if (!b->poll)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    int rc = uv_poll_init_socket(uv, b->poll, fd);
    if (rc != 0) {
        eddy_free(b->poll);
        b->poll = NULL;
        return eddy_err_set(err, EDDY_EIO, "cannot watch the socket: %s", uv_strerror(rc));
    }
    b->poll->data = b;
    b->poll_events = 0;
    poll_update(b);
    return EDDY_OK;
}

/* The flush hook: the loop has settled, so every message read so far went through the flow
 * and its appends are committed. Acknowledge them, and send what waited with them. */
static void on_flush(eddy_loop *loop, void *data)
{
    mqtt_broker *b = data;
    if (!b->unsettled && !(b->poll && mosquitto_want_write(b->mosq)))
        return;
    b->unsettled = false;
    write_out(b);
    poll_update(b);
}

static void on_drain(eddy_node *node, void *state)
{
    mqtt_broker *b = state;
    if (b->closing)
        return;
    b->read_paused = false;
    coalesce_read_soon(b);
    poll_update(b);
}

/* ---- timers ---- */

static int64_t misc_tick(eddy_loop *loop, eddy_timer *timer, void *data)
{
    mqtt_broker *b = data;
    if (b->poll) {
        mosquitto_loop_misc(b->mosq); /* keepalive: may queue a PINGREQ or drop the link */
        poll_update(b);
    }
    return MISC_INTERVAL_MS;
}

static int64_t retry_tick(eddy_loop *loop, eddy_timer *timer, void *data)
{
    mqtt_broker *b = data;
    b->retry_timer = NULL;
    if (b->wanted && !b->closing && b->conn == MQTT_DOWN)
        start_connect(b);
    return EDDY_TIMER_STOP;
}

static void schedule_retry(mqtt_broker *b)
{
    if (b->retry_timer || b->closing || !b->wanted)
        return;
    int64_t delay = b->backoff_ms;
    b->backoff_ms = b->backoff_ms * 2 > b->reconnectMax ? b->reconnectMax : b->backoff_ms * 2;
    b->retry_timer = eddy_timer_start(b->loop, delay, retry_tick, b, NULL);
}

/* ---- the outgoing queue ---- */

static void pending_free(mqtt_pending *p)
{
    eddy_free(p->topic);
    eddy_free(p);
}

static int publish_now(mqtt_broker *b, const char *topic, const void *payload, size_t len, int qos,
                       bool retain)
{
    if (len > MQTT_PAYLOAD_MAX)
        return MOSQ_ERR_PAYLOAD_SIZE;
    int mid = 0;
    int rc = mosquitto_publish(b->mosq, &mid, topic, (int)len, payload, qos, retain);
    if (rc == MOSQ_ERR_SUCCESS && qos > 0 && mid > 0 && mid < 65536 &&
        !(b->mids[mid / 8] & (1u << (mid % 8)))) {
        b->mids[mid / 8] |= (unsigned char)(1u << (mid % 8));
        b->in_flight++;
    }
    poll_update(b);
    return rc;
}

/* libmosquitto finished a publish: a QoS 1/2 one was acknowledged by the broker. */
static void on_publish(struct mosquitto *mosq, void *data, int mid, int reason,
                       const mosquitto_property *props)
{
    mqtt_broker *b = data;
    if (mid > 0 && mid < 65536 && (b->mids[mid / 8] & (1u << (mid % 8)))) {
        b->mids[mid / 8] &= (unsigned char)~(1u << (mid % 8));
        b->in_flight--;
        if (b->queue_head)
            schedule_drain(b);
    }
}

/* The link is up and libmosquitto holds fewer than outQueueLimit unacknowledged messages. */
static bool can_hand_over(const mqtt_broker *b)
{
    return b->conn == MQTT_UP && b->in_flight < (size_t)b->outQueueLimit;
}

static int64_t drain_tick(eddy_loop *loop, eddy_timer *timer, void *data)
{
    mqtt_broker *b = data;
    b->drain_timer = NULL;
    size_t sent = 0;
    while (b->queue_head && can_hand_over(b)) {
        mqtt_pending *p = b->queue_head;
        int rc = publish_now(b, p->topic, p->payload, p->len, p->qos, p->retain);
        if (rc == MOSQ_ERR_NO_CONN || rc == MOSQ_ERR_CONN_LOST)
            break;                  /* the link went again: keep the rest for the next connection */
        if (rc != MOSQ_ERR_SUCCESS) /* this one can never go: do not let it block the rest */
            eddy_node_warn(b->node, "queued message to '%s' dropped: %s", p->topic,
                           mosquitto_strerror(rc));
        b->queue_head = p->next;
        if (!b->queue_head)
            b->queue_tail = NULL;
        b->queue_count--;
        b->queue_bytes -= p->len;
        pending_free(p);
        sent++;
    }
    if (sent)
        eddy_node_log(b->node, "handed %zu queued message(s) to the connection with %s", sent,
                      b->label);
    return EDDY_TIMER_STOP;
}

static void schedule_drain(mqtt_broker *b)
{
    if (!b->drain_timer && !b->closing)
        b->drain_timer = eddy_timer_start(b->loop, 0, drain_tick, b, NULL);
}

static int enqueue(mqtt_broker *b, eddy_node *from, const char *topic, const void *payload,
                   size_t len, int qos, bool retain, eddy_err *err)
{
    if (b->queue_count >= (size_t)b->outQueueLimit ||
        b->queue_bytes + len > (size_t)b->outQueueBytes) {
        if (!b->queue_full_said) {
            b->queue_full_said = true;
            eddy_node_warn(b->node,
                           "outgoing queue full (%zu messages, %zu bytes) while %s is "
                           "unreachable: further messages are refused",
                           b->queue_count, b->queue_bytes, b->label);
        }
        eddy_node_set_status(from, "red", "ring", "queue full");
        return eddy_err_set(err, EDDY_EFULL,
                            "broker %s unreachable and the outgoing queue is full (%zu "
                            "messages, %zu bytes): message not queued",
                            b->label, b->queue_count, b->queue_bytes);
    }
    mqtt_pending *p = eddy_malloc(sizeof(*p) + len);
    char *t = eddy_strdup(topic);
    if (!p || !t) {
        eddy_free(p);
        eddy_free(t);
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory queueing a message");
    }
    *p = (mqtt_pending){.topic = t, .len = len, .qos = qos, .retain = retain};
    if (len)
        memcpy(p->payload, payload, len);
    if (b->queue_tail)
        b->queue_tail->next = p;
    else
        b->queue_head = p;
    b->queue_tail = p;
    b->queue_count++;
    b->queue_bytes += len;
    if (b->queue_count == 1 || b->queue_count % 1000 == 0) {
        char text[64];
        snprintf(text, sizeof(text), "queued %zu (disconnected)", b->queue_count);
        eddy_node_set_status(from, "yellow", "ring", text);
    }
    return EDDY_OK;
}

int mqtt_broker_publish(mqtt_broker *b, eddy_node *from, const char *topic, const void *payload,
                        size_t len, int qos, bool retain, eddy_err *err)
{
    if (!mqtt_topic_valid(topic))
        return eddy_err_set(err, EDDY_EINVAL, "invalid topic '%s': empty, not UTF-8, or has + or #",
                            topic ? topic : "");
    if (len > MQTT_PAYLOAD_MAX)
        return eddy_err_set(err, EDDY_EINVAL, "payload of %zu bytes is over MQTT's limit", len);
    if (b->conn == MQTT_UP && !b->queue_head && (qos == 0 || can_hand_over(b))) {
        int rc = publish_now(b, topic, payload, len, qos, retain);
        if (rc == MOSQ_ERR_SUCCESS)
            return EDDY_OK;
        if (rc != MOSQ_ERR_NO_CONN && rc != MOSQ_ERR_CONN_LOST)
            return eddy_err_set(err, EDDY_EIO, "cannot publish to '%s': %s", topic,
                                mosquitto_strerror(rc));
    }
    if (qos == 0) {
        if (b->conn == MQTT_UP)
            return EDDY_OK; /* not reached: while up, QoS 0 goes straight out */
        if (b->dropped_qos0++ == 0)
            eddy_node_warn(b->node,
                           "%s unreachable: QoS 0 messages are dropped until it is back "
                           "(QoS 1 and 2 are queued)",
                           b->label);
        return EDDY_OK;
    }
    return enqueue(b, from, topic, payload, len, qos, retain, err);
}

/* ---- subscriptions ---- */

/* The highest QoS any user wants for 'filter'; -1 when nobody holds it. */
static int filter_qos(const mqtt_broker *b, const char *filter)
{
    int qos = -1;
    for (const mqtt_sub *s = b->subs; s; s = s->next)
        if (strcmp(s->filter, filter) == 0 && s->qos > qos)
            qos = s->qos;
    return qos;
}

static void send_subscribe(mqtt_broker *b, const char *filter, int qos)
{
    if (b->conn != MQTT_UP)
        return; /* done on connect */ /* QoS 2 is asked for as QoS 1: libmosquitto sends PUBREC
                                       * before it hands a QoS 2 message over, so its
                                       * acknowledgement cannot wait for the flow; after a crash the
                                       * broker would only resend PUBREL and the message would be
                                       * lost. QoS 1 is delivered again instead (at least once). */
    int rc = mosquitto_subscribe(b->mosq, NULL, filter, qos > 1 ? 1 : qos);
    if (rc != MOSQ_ERR_SUCCESS)
        eddy_node_warn(b->node, "cannot subscribe to '%s': %s", filter, mosquitto_strerror(rc));
    poll_update(b);
}

static void resubscribe_all(mqtt_broker *b)
{
    for (mqtt_sub *s = b->subs; s; s = s->next) {
        bool first = true; /* one SUBSCRIBE per distinct filter */
        for (mqtt_sub *t = b->subs; t != s; t = t->next)
            if (strcmp(t->filter, s->filter) == 0)
                first = false;
        if (first)
            send_subscribe(b, s->filter, filter_qos(b, s->filter));
    }
}

int mqtt_broker_subscribe(mqtt_broker *b, eddy_node *user, const char *filter, int qos,
                          mqtt_deliver_fn deliver, void *token, eddy_err *err)
{
    if (!mqtt_filter_valid(filter))
        return eddy_err_set(err, EDDY_EINVAL, "invalid topic filter '%s'", filter ? filter : "");
    mqtt_broker_unsubscribe(b, user, filter);
    mqtt_sub *s = eddy_calloc(1, sizeof(*s));
    char *f = eddy_strdup(filter);
    if (!s || !f) {
        eddy_free(s);
        eddy_free(f);
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory subscribing");
    }
    int before = filter_qos(b, filter);
    *s = (mqtt_sub){.filter = f, .qos = qos, .user = user, .deliver = deliver, .token = token};
    mqtt_sub **tail = &b->subs;
    while (*tail)
        tail = &(*tail)->next;
    *tail = s;
    if (qos > before)
        send_subscribe(b, filter, qos);
    return EDDY_OK;
}

static int remove_subs(mqtt_broker *b, eddy_node *user, const char *filter, bool at_broker)
{
    int removed = 0;
    for (mqtt_sub **p = &b->subs; *p;) {
        mqtt_sub *s = *p;
        if (s->user != user || (filter && strcmp(s->filter, filter) != 0)) {
            p = &s->next;
            continue;
        }
        *p = s->next;
        if (at_broker && filter_qos(b, s->filter) < 0 && b->conn == MQTT_UP) {
            mosquitto_unsubscribe(b->mosq, NULL, s->filter);
            poll_update(b);
        }
        eddy_free(s->filter);
        eddy_free(s);
        removed++;
    }
    return removed;
}

int mqtt_broker_unsubscribe(mqtt_broker *b, eddy_node *user, const char *filter)
{
    return remove_subs(b, user, filter, true);
}

/* ---- users ---- */

int mqtt_broker_register(mqtt_broker *b, eddy_node *user, eddy_err *err)
{
    mqtt_user *u = eddy_calloc(1, sizeof(*u));
    if (!u)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    u->node = user;
    u->next = b->users;
    b->users = u;
    status_for_conn(b, user);
    return EDDY_OK;
}

void mqtt_broker_unregister(mqtt_broker *b, eddy_node *user, bool removed)
{
    /* On a restart the broker keeps the session's subscriptions, so a persistent session
     * still collects messages while eddy is down; a deleted node's go too. */
    remove_subs(b, user, NULL, removed && b->autoUnsubscribe);
    for (mqtt_user **p = &b->users; *p; p = &(*p)->next) {
        if ((*p)->node == user) {
            mqtt_user *u = *p;
            *p = u->next;
            eddy_free(u);
            return;
        }
    }
}

/* ---- libmosquitto callbacks (all on the loop thread, from inside our calls) ---- */

static void on_connect(struct mosquitto *mosq, void *data, int rc, int flags,
                       const mosquitto_property *props)
{
    mqtt_broker *b = data;
    if (rc != 0) { /* libmosquitto closes the socket next and calls on_disconnect */
        if (rc != b->last_connack)
            eddy_node_warn(b->node, "broker %s refused the connection: %s", b->label,
                           mqtt_broker_is_v5(b) ? mosquitto_reason_string(rc)
                                                : mosquitto_connack_string(rc));
        b->last_connack = rc;
        return;
    }
    b->last_connack = 0;
    b->last_connect_rc = 0;
    eddy_timer_stop(b->loop, b->connect_timer);
    b->connect_timer = NULL;
    b->conn = MQTT_UP;
    b->backoff_ms = b->reconnectMin;
    eddy_node_log(b->node, "connected to broker %s", b->label);
    if (b->dropped_qos0)
        eddy_node_warn(b->node, "%llu QoS 0 message(s) were dropped while %s was unreachable",
                       (unsigned long long)b->dropped_qos0, b->label);
    b->dropped_qos0 = 0;
    b->queue_full_said = false;
    status_for_conn(b, NULL);
    resubscribe_all(b);
    if (*b->birthTopic)
        publish_now(b, b->birthTopic, b->birthPayload, strlen(b->birthPayload), (int)b->birthQos,
                    b->birthRetain);
    /* The queue goes out after libmosquitto has resent what was in flight when the link
     * dropped (it does that right after this callback), so order is kept. */
    if (b->queue_head)
        schedule_drain(b);
}

static void on_disconnect(struct mosquitto *mosq, void *data, int rc,
                          const mosquitto_property *props)
{
    mqtt_broker *b = data;
    link_down(b, rc, rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
}

/* The connection is gone (on_disconnect, or a socket libmosquitto closed silently). */
static void link_down(mqtt_broker *b, int rc, const char *why)
{
    bool was_up = b->conn == MQTT_UP;
    eddy_timer_stop(b->loop, b->connect_timer);
    b->connect_timer = NULL;
    unwatch_socket(b); /* libmosquitto has closed the socket */
    b->conn = MQTT_DOWN;
    b->unsettled = false; /* unwritten acknowledgements went with the connection */
    if (b->closing) {
        /* Not from inside libmosquitto's call stack: finish on the next loop turn. */
        eddy_timer_stop(b->loop, b->close_timer);
        b->close_timer = eddy_timer_start(b->loop, 0, close_now, b, NULL);
        return;
    }
    if (was_up)
        eddy_node_warn(b->node, "disconnected from broker %s: %s", b->label,
                       rc == 0 ? "on request" : why);
    status_for_conn(b, NULL);
    schedule_retry(b);
}

static json_t *user_properties_of(const mosquitto_property *props)
{
    json_t *obj = NULL;
    for (const mosquitto_property *p = props; p; p = mosquitto_property_next(p)) {
        if (mosquitto_property_identifier(p) != MQTT_PROP_USER_PROPERTY)
            continue;
        char *name = NULL, *value = NULL;
        if (mosquitto_property_read_string_pair(p, MQTT_PROP_USER_PROPERTY, &name, &value, false)) {
            if (!obj)
                obj = json_object();
            json_object_set_new(obj, name, json_string(value));
            free(name); /* libmosquitto allocates these with malloc */
            free(value);
        }
    }
    return obj;
}

static void on_message(struct mosquitto *mosq, void *data, const struct mosquitto_message *m,
                       const mosquitto_property *props)
{
    mqtt_broker *b = data;
    b->read_message = true;
    b->read_since_tick = true;
    if (m->qos > 0)
        b->unsettled = true;
    mqtt_delivery d = {.topic = m->topic,
                       .payload = m->payload,
                       .len = m->payloadlen > 0 ? (size_t)m->payloadlen : 0,
                       .qos = m->qos,
                       .retain = m->retain,
                       .payload_format_indicator = -1};
    char *content_type = NULL, *response_topic = NULL;
    uint8_t pfi = 0;
    if (props) {
        mosquitto_property_read_string(props, MQTT_PROP_CONTENT_TYPE, &content_type, false);
        mosquitto_property_read_string(props, MQTT_PROP_RESPONSE_TOPIC, &response_topic, false);
        if (mosquitto_property_read_byte(props, MQTT_PROP_PAYLOAD_FORMAT_INDICATOR, &pfi, false))
            d.payload_format_indicator = pfi;
        d.user_properties = user_properties_of(props);
    }
    d.content_type = content_type;
    d.response_topic = response_topic;
    bool delivered = false;
    for (mqtt_sub *s = b->subs; s; s = s->next) {
        if (filter_matches(s->filter, m->topic)) {
            s->deliver(s->user, s->token, &d);
            delivered = true;
        }
    }
    if (!delivered)
        eddy_log(EDDY_LOG_DEBUG, "[mqtt-broker:%s] message on '%s' matches no subscription",
                 eddy_node_id(b->node), m->topic);
    free(content_type);
    free(response_topic);
    json_decref(d.user_properties);
    /* One mosquitto_loop_read takes as many packets as there are QoS 1 and 2 messages in
     * its queues (our own unacknowledged publishes included), not the one asked for: at
     * QoS 0 with many outgoing messages it read thousands per call, and the run queue
     * grew to 28,000 messages. An EAGAIN left behind ends its loop after this packet, at
     * the turn's share or at a full run queue. Not with TLS, whose decrypted bytes epoll
     * cannot see: there the loop must drain. */
    if ((--b->batch_left <= 0 || eddy_node_backlogged(b->node)) && !b->usetls)
        errno = EAGAIN;
}

/* ---- connecting ---- */

/* No CONNACK in time (a black-holed host, a TLS peer that never answers): give up this
 * attempt; the next one closes the old socket. */
static int64_t connect_timeout(eddy_loop *loop, eddy_timer *timer, void *data)
{
    mqtt_broker *b = data;
    b->connect_timer = NULL;
    if (b->conn == MQTT_CONNECTING) {
        eddy_node_warn(b->node, "no answer from broker %s in %d s", b->label,
                       CONNECT_TIMEOUT_MS / 1000);
        link_down(b, MOSQ_ERR_TIMEOUT, "timed out");
    }
    return EDDY_TIMER_STOP;
}
static void start_connect(mqtt_broker *b)
{
    eddy_err err;
    eddy_err_clear(&err);
    b->conn = MQTT_CONNECTING;
    status_for_conn(b, NULL);
    int rc;
    if (!b->connect_started) {
        b->connect_started = true;
        if (mqtt_broker_is_v5(b) && b->sessionExpiry > 0) {
            /* libmosquitto 2.0 takes CONNECT properties only in its blocking connect (the
             * TCP handshake; the MQTT exchange still runs on the loop). They are kept for
             * the asynchronous reconnects that follow. */
            mosquitto_property *props = NULL;
            mosquitto_property_add_int32(&props, MQTT_PROP_SESSION_EXPIRY_INTERVAL,
                                         (uint32_t)b->sessionExpiry);
            rc = mosquitto_connect_bind_v5(b->mosq, b->host, b->port_number, (int)b->keepalive,
                                           NULL, props);
            mosquitto_property_free_all(&props);
        } else {
            rc = mosquitto_connect_async(b->mosq, b->host, b->port_number, (int)b->keepalive);
        }
    } else {
        rc = mosquitto_reconnect_async(b->mosq);
    }
    if (rc == MOSQ_ERR_SUCCESS && watch_socket(b, &err) == EDDY_OK) {
        b->connect_timer = eddy_timer_start(b->loop, CONNECT_TIMEOUT_MS, connect_timeout, b, NULL);
        return;
    }
    if (rc == MOSQ_ERR_SUCCESS)
        eddy_node_warn(b->node, "cannot connect to broker %s: %s", b->label, err.msg);
    else if (rc != b->last_connect_rc) /* once per kind of failure, not at every retry */
        eddy_node_warn(b->node, "cannot connect to broker %s: %s", b->label,
                       rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    b->last_connect_rc = rc;
    b->conn = MQTT_DOWN;
    status_for_conn(b, NULL);
    schedule_retry(b);
}

void mqtt_broker_connect(mqtt_broker *b)
{
    b->wanted = true;
    if (b->conn == MQTT_DOWN && !b->retry_timer && !b->closing)
        start_connect(b);
}

void mqtt_broker_disconnect(mqtt_broker *b)
{
    b->wanted = false;
    eddy_timer_stop(b->loop, b->retry_timer);
    b->retry_timer = NULL;
    if (b->conn == MQTT_DOWN)
        return;
    mosquitto_disconnect(b->mosq); /* written after pending acks; on_disconnect follows */
    poll_update(b);
}

bool mqtt_broker_connected(const mqtt_broker *b)
{
    return b->conn == MQTT_UP;
}

bool mqtt_broker_is_v5(const mqtt_broker *b)
{
    return (int)b->protocolVersion == 5;
}

mqtt_broker *mqtt_broker_of(eddy_node *broker_node)
{
    return broker_node ? eddy_node_state(broker_node) : NULL;
}

/* ---- set-up ---- */

/* Splits 'broker' ("host", "mqtt://host:port", "mqtts://host") into host and port. */
static int parse_broker(mqtt_broker *b, eddy_err *err)
{
    const char *s = b->broker;
    bool tls_scheme = false;
    const char *scheme_end = strstr(s, "://");
    if (scheme_end) {
        size_t n = (size_t)(scheme_end - s);
        if ((n == 4 && strncmp(s, "mqtt", 4) == 0) || (n == 3 && strncmp(s, "tcp", 3) == 0))
            ;
        else if ((n == 5 && strncmp(s, "mqtts", 5) == 0) || (n == 3 && strncmp(s, "ssl", 3) == 0))
            tls_scheme = true;
        else
            return eddy_err_set(err, EDDY_EUNSUPPORTED,
                                "broker '%s': only mqtt:// and mqtts:// are supported (not "
                                "websockets)",
                                s);
        s = scheme_end + 3;
    }
    const char *end = s + strcspn(s, "/");
    const char *colon = NULL;
    if (*s == '[') { /* [ipv6]:port */
        const char *close = memchr(s, ']', (size_t)(end - s));
        if (!close)
            return eddy_err_set(err, EDDY_EINVAL, "broker '%s': unclosed '['", b->broker);
        colon = close[1] == ':' ? close + 1 : NULL;
        b->host = eddy_strndup(s + 1, (size_t)(close - s - 1));
    } else {
        colon = memchr(s, ':', (size_t)(end - s));
        b->host = eddy_strndup(s, (size_t)((colon ? colon : end) - s));
    }
    if (!b->host)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    if (!*b->host) {
        eddy_free(b->host);
        b->host = eddy_strdup("localhost");
    }
    b->port_number = b->port > 0 ? (int)b->port : 1883;
    if (colon) {
        char *num_end;
        long port = strtol(colon + 1, &num_end, 10);
        if (num_end != end || port < 1 || port > 65535)
            return eddy_err_set(err, EDDY_EINVAL, "broker '%s': bad port", b->broker);
        b->port_number = (int)port;
    }
    if (tls_scheme)
        b->usetls = true;
    return EDDY_OK;
}

static int broker_validate(const eddy_node_type *type, const json_t *config, void *state,
                           eddy_err *err)
{
    mqtt_broker *b = state;
    int v = (int)b->protocolVersion;
    if (v != 3 && v != 4 && v != 5)
        return eddy_err_set(err, EDDY_EINVAL, "protocolVersion %g: use 3, 4 (MQTT 3.1.1) or 5",
                            b->protocolVersion);
    if (b->port < 0 || b->port > 65535)
        return eddy_err_set(err, EDDY_EINVAL, "port %g is not a TCP port", b->port);
    if (b->keepalive != 0 && (b->keepalive < 5 || b->keepalive > 65535))
        return eddy_err_set(err, EDDY_EINVAL,
                            "keepalive %g: use 0 (none) or 5 to 65535 seconds (libmosquitto's "
                            "range)",
                            b->keepalive);
    if (b->sessionExpiry < 0 || b->sessionExpiry > 4294967295.0)
        return eddy_err_set(err, EDDY_EINVAL, "sessionExpiry %g is not 0 to 4294967295 s",
                            b->sessionExpiry);
    const double qos[] = {b->birthQos, b->closeQos, b->willQos};
    for (int i = 0; i < 3; i++)
        if (qos[i] != 0 && qos[i] != 1 && qos[i] != 2)
            return eddy_err_set(err, EDDY_EINVAL, "QoS %g is not 0, 1 or 2", qos[i]);
    const char *topics[] = {b->birthTopic, b->closeTopic, b->willTopic};
    for (int i = 0; i < 3; i++)
        if (*topics[i] && !mqtt_topic_valid(topics[i]))
            return eddy_err_set(err, EDDY_EINVAL, "topic '%s' cannot be published to", topics[i]);
    if (b->outQueueLimit < 0 || b->outQueueBytes < 0 || b->reconnectMin < 1 ||
        b->reconnectMax < b->reconnectMin)
        return eddy_err_set(err, EDDY_EINVAL,
                            "outQueueLimit/outQueueBytes must be >= 0 and "
                            "1 <= reconnectMin <= reconnectMax");
    if (b->readCoalesce < 0 || b->readCoalesce > 1000)
        return eddy_err_set(err, EDDY_EINVAL, "readCoalesce %ld: use 0 (off) to 1000 ms",
                            b->readCoalesce);
    int rc = parse_broker(b, err);
    eddy_free(b->host);
    b->host = NULL;
    return rc;
}

/* Credentials come as Node-RED's editor deploys them: a "credentials" object on the node
 * ({"user", "password"}); exported flows carry none, so they may also come from the
 * environment through ${VAR} references. */
static int set_credentials(mqtt_broker *b, eddy_err *err)
{
    const json_t *creds = json_object_get(eddy_node_config(b->node), "credentials");
    const char *user = json_string_value(json_object_get(creds, "user"));
    const char *password = json_string_value(json_object_get(creds, "password"));
    if (!user || !*user)
        return EDDY_OK;
    if (mosquitto_username_pw_set(b->mosq, user, password) != MOSQ_ERR_SUCCESS)
        return eddy_err_set(err, EDDY_ENOMEM, "cannot set credentials");
    return EDDY_OK;
}

static int set_tls(mqtt_broker *b, eddy_err *err)
{
    if (!b->usetls)
        return EDDY_OK;
    const tls_config *t = b->tls ? tls_config_of(b->tls) : NULL;
    const char *ca = t && *t->ca ? t->ca : NULL;
    const char *cert = t && *t->cert ? t->cert : NULL;
    const char *key = t && *t->key ? t->key : NULL;
    bool verify = t ? t->verifyservercert : true;
    /* Without a CA file, the system's certificate folder. */
    int rc = mosquitto_tls_set(b->mosq, ca, ca ? NULL : "/etc/ssl/certs", cert, key, NULL);
    if (rc == MOSQ_ERR_SUCCESS && !verify) {
        rc = mosquitto_tls_opts_set(b->mosq, 0, NULL, NULL);
        if (rc == MOSQ_ERR_SUCCESS)
            rc = mosquitto_tls_insecure_set(b->mosq, true);
    }
    if (rc != MOSQ_ERR_SUCCESS)
        return eddy_err_set(err, EDDY_EINVAL, "TLS settings (ca '%s', cert '%s', key '%s'): %s",
                            ca ? ca : "", cert ? cert : "", key ? key : "",
                            rc == MOSQ_ERR_ERRNO ? strerror(errno) : mosquitto_strerror(rc));
    return EDDY_OK;
}

static int set_will(mqtt_broker *b, eddy_err *err)
{
    if (!*b->willTopic)
        return EDDY_OK;
    int rc = mosquitto_will_set(b->mosq, b->willTopic, (int)strlen(b->willPayload), b->willPayload,
                                (int)b->willQos, b->willRetain);
    if (rc != MOSQ_ERR_SUCCESS)
        return eddy_err_set(err, EDDY_EINVAL, "will message: %s", mosquitto_strerror(rc));
    return EDDY_OK;
}

static char *make_client_id(const mqtt_broker *b)
{
    if (*b->clientid)
        return eddy_strdup(b->clientid);
    char id[17], buf[32];
    eddy_msg_new_id(id);
    snprintf(buf, sizeof(buf), "eddy_%s", id);
    return eddy_strdup(buf);
}

static int create_client(mqtt_broker *b, eddy_err *err)
{
    static bool lib_ready;
    if (!lib_ready) {
        mosquitto_lib_init();
        lib_ready = true;
    }
    bool clean = b->cleansession;
    if (!clean && !*b->clientid) {
        eddy_node_warn(b->node, "a persistent session needs a client id: using a clean session");
        clean = true;
    }
    char *id = make_client_id(b);
    if (!id)
        return eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    size_t label_len = strlen(id) + strlen(b->host) + 16;
    b->label = eddy_malloc(label_len);
    if (b->label)
        snprintf(b->label, label_len, "%s@%s:%d", id, b->host, b->port_number);
    b->mosq = mosquitto_new(id, clean, b);
    eddy_free(id);
    if (!b->mosq || !b->label)
        return eddy_err_set(err, EDDY_ENOMEM, "cannot create the MQTT client: %s", strerror(errno));
    /* Never write on its own: writes happen in write_out, after the flow settled. */
    mosquitto_threaded_set(b->mosq, true);
    int version = (int)b->protocolVersion == 5   ? MQTT_PROTOCOL_V5
                  : (int)b->protocolVersion == 3 ? MQTT_PROTOCOL_V31
                                                 : MQTT_PROTOCOL_V311;
    mosquitto_int_option(b->mosq, MOSQ_OPT_PROTOCOL_VERSION, version);
    mosquitto_connect_v5_callback_set(b->mosq, on_connect);
    mosquitto_disconnect_v5_callback_set(b->mosq, on_disconnect);
    mosquitto_message_v5_callback_set(b->mosq, on_message);
    mosquitto_publish_v5_callback_set(b->mosq, on_publish);
    int rc = set_credentials(b, err);
    if (rc == EDDY_OK)
        rc = set_tls(b, err);
    if (rc == EDDY_OK)
        rc = set_will(b, err);
    return rc;
}

static void release(mqtt_broker *b)
{
    eddy_timer_stop(b->loop, b->misc_timer);
    eddy_timer_stop(b->loop, b->retry_timer);
    eddy_timer_stop(b->loop, b->drain_timer);
    eddy_timer_stop(b->loop, b->close_timer);
    eddy_timer_stop(b->loop, b->connect_timer);
    b->misc_timer = b->retry_timer = b->drain_timer = b->close_timer = b->connect_timer = NULL;
    unwatch_socket(b);
    if (b->mosq)
        mosquitto_destroy(b->mosq); /* closes the socket if still open */
    b->mosq = NULL;
    eddy_loop_remove_flush(b->loop, on_flush, b);
    if (b->queue_count)
        eddy_node_warn(b->node, "%zu queued outgoing message(s) were never delivered to %s",
                       b->queue_count, b->label ? b->label : "the broker");
    while (b->queue_head) {
        mqtt_pending *p = b->queue_head;
        b->queue_head = p->next;
        pending_free(p);
    }
    b->queue_tail = NULL;
    while (b->subs)
        remove_subs(b, b->subs->user, NULL, false);
    while (b->users)
        mqtt_broker_unregister(b, b->users->node, false);
    eddy_free(b->host);
    eddy_free(b->label);
    b->host = b->label = NULL;
}

/* Connecting waits one loop turn, so every user has registered its subscriptions. */
static int64_t first_connect(eddy_loop *loop, eddy_timer *timer, void *data)
{
    mqtt_broker *b = data;
    b->retry_timer = NULL;
    if (b->wanted)
        start_connect(b);
    return EDDY_TIMER_STOP;
}

static int broker_setup(eddy_node *node, void *state, eddy_err *err)
{
    mqtt_broker *b = state;
    b->node = node;
    b->loop = eddy_node_loop(node);
    if (!eddy_loop_uv(b->loop))
        return eddy_err_set(err, EDDY_EUNSUPPORTED, "MQTT needs the real-time loop");
    b->backoff_ms = b->reconnectMin;
    b->wanted = b->autoConnect;
    int rc = parse_broker(b, err);
    if (rc == EDDY_OK)
        rc = create_client(b, err);
    if (rc == EDDY_OK && eddy_loop_add_flush(b->loop, on_flush, b) != EDDY_OK)
        rc = eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    if (rc == EDDY_OK) {
        b->misc_timer = eddy_timer_start(b->loop, MISC_INTERVAL_MS, misc_tick, b, NULL);
        b->retry_timer = eddy_timer_start(b->loop, 0, first_connect, b, NULL);
        if (!b->misc_timer || !b->retry_timer)
            rc = eddy_err_set(err, EDDY_ENOMEM, "out of memory");
    }
    if (rc != EDDY_OK) {
        release(b);
        return rc;
    }
    eddy_node_on_drain(node, on_drain);
    return EDDY_OK;
}

/* ---- closing ---- */

static void finish_close(mqtt_broker *b)
{
    if (b->close_done)
        return;
    b->close_done = true;
    release(b);
    eddy_node_closed(b->node);
}

static int64_t close_now(eddy_loop *loop, eddy_timer *timer, void *data)
{
    mqtt_broker *b = data;
    b->close_timer = NULL;
    finish_close(b);
    return EDDY_TIMER_STOP;
}

static int64_t close_timeout(eddy_loop *loop, eddy_timer *timer, void *data)
{
    mqtt_broker *b = data;
    eddy_node_warn(b->node, "broker %s did not take the disconnect in %d ms; closing anyway",
                   b->label, CLOSE_TIMEOUT_MS);
    return close_now(loop, timer, data);
}

/* A clean close: stop reading (what is unread stays unacknowledged, for the broker to
 * deliver again), send the close message and DISCONNECT behind the acknowledgements of
 * what the flow took, and finish when libmosquitto reports the link closed. */
static int broker_close(eddy_node *node, void *state, bool removed)
{
    mqtt_broker *b = state;
    b->closing = true;
    b->read_paused = true;
    eddy_timer_stop(b->loop, b->retry_timer);
    eddy_timer_stop(b->loop, b->drain_timer);
    b->retry_timer = b->drain_timer = NULL;
    if (b->conn != MQTT_UP || !b->poll) {
        release(b);
        return EDDY_CLOSE_DONE;
    }
    if (*b->closeTopic)
        publish_now(b, b->closeTopic, b->closePayload, strlen(b->closePayload), (int)b->closeQos,
                    b->closeRetain);
    mosquitto_disconnect(b->mosq);
    b->close_timer = eddy_timer_start(b->loop, CLOSE_TIMEOUT_MS, close_timeout, b, NULL);
    poll_update(b);
    return EDDY_CLOSE_LATER;
}

const eddy_node_type eddy_node_mqtt_broker = {
    .name = "mqtt-broker",
    .inputs = 0,
    .outputs = 0,
    .flags = EDDY_NODE_CONFIG,
    .props = broker_props,
    .state_size = sizeof(mqtt_broker),
    .help = "The connection to an MQTT broker shared by mqtt in and mqtt out nodes. "
            "Acknowledgements of received QoS 1/2 messages are sent only after the flow has "
            "taken the message and the event store committed it; QoS 1/2 publishes wait in a "
            "bounded queue while the broker is unreachable.",
    .validate = broker_validate,
    .setup = broker_setup,
    .close = broker_close,
    .public_credentials = "|user|",
};
