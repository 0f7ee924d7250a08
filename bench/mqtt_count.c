/* mqtt_count.c: the floor of the MQTT benchmark (bench/mqtt.sh): a libmosquitto subscriber
 * that only counts. It subscribes to glasshouse/# and reads the socket as eddy's mqtt-broker
 * node does under dense input (poll, then mosquitto_loop_read until the socket is empty;
 * woken when 16 KiB are waiting, or after 1 ms), but does nothing with a message beyond
 * counting it, so the difference to eddy is the flow's cost.
 *
 * Like the benchmark flow, it answers a message on glasshouse/end by publishing its payload
 * to bench/done. On an end marker whose payload contains "run" it prints the number of
 * readings received since the previous one (received=N bytes=B) and starts again. It runs
 * until SIGINT or SIGTERM. Usage: bench_mqtt_count [-h HOST] -p PORT [-q QOS] */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <getopt.h>
#include <mosquitto.h>
#include <poll.h>
#include <signal.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#define FILTER     "glasshouse/#"
#define END_TOPIC  "glasshouse/end"
#define DONE_TOPIC "bench/done"
/* eddy's read coalescing, which a burst keeps on: see nodes/mqtt_broker.c */
#define COALESCE_BYTES 16384
#define COALESCE_MS    1

static volatile sig_atomic_t stop;
static int sub_qos;
static long received;
static bool read_message; /* on_message ran during the current mosquitto_loop_read */
static long long received_bytes;

static void on_signal(int sig)
{
    (void)sig;
    stop = 1;
}

static void on_connect(struct mosquitto *mosq, void *data, int rc)
{
    (void)data;
    if (rc != 0) {
        fprintf(stderr, "bench_mqtt_count: connection refused: %s\n", mosquitto_connack_string(rc));
        stop = 1;
        return;
    }
    mosquitto_subscribe(mosq, NULL, FILTER, sub_qos);
}

static void on_message(struct mosquitto *mosq, void *data, const struct mosquitto_message *m)
{
    (void)data;
    read_message = true;
    if (strcmp(m->topic, END_TOPIC) != 0) {
        received++;
        received_bytes += m->payloadlen;
        return;
    }
    mosquitto_publish(mosq, NULL, DONE_TOPIC, m->payloadlen, m->payload, 1, false);
    if (m->payloadlen > 0 && memmem(m->payload, (size_t)m->payloadlen, "run", 3)) {
        printf("received=%ld bytes=%lld\n", received, received_bytes);
        fflush(stdout);
        received = 0;
        received_bytes = 0;
    }
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 0, opt;
    while ((opt = getopt(argc, argv, "h:p:q:")) != -1) {
        switch (opt) {
        case 'h':
            host = optarg;
            break;
        case 'p':
            port = atoi(optarg);
            break;
        case 'q':
            sub_qos = atoi(optarg);
            break;
        default:
            goto usage;
        }
    }
    if (optind != argc || port <= 0 || sub_qos < 0 || sub_qos > 2)
        goto usage;
    signal(SIGINT, on_signal);
    signal(SIGTERM, on_signal);

    mosquitto_lib_init();
    struct mosquitto *mosq = mosquitto_new(NULL, true, NULL);
    if (!mosq) {
        perror("bench_mqtt_count: mosquitto_new");
        return 1;
    }
    mosquitto_connect_callback_set(mosq, on_connect);
    mosquitto_message_callback_set(mosq, on_message);
    int rc = mosquitto_connect(mosq, host, port, 60);
    if (rc != MOSQ_ERR_SUCCESS) {
        fprintf(stderr, "bench_mqtt_count: connect to %s:%d: %s\n", host, port,
                mosquitto_strerror(rc));
        return 1;
    }
    int lowat = COALESCE_BYTES;
    setsockopt(mosquitto_socket(mosq), SOL_SOCKET, SO_RCVLOWAT, &lowat, sizeof lowat);
    time_t last_misc = time(NULL);
    while (!stop) {
        struct pollfd p = {.fd = mosquitto_socket(mosq), .events = POLLIN};
        if (mosquitto_want_write(mosq))
            p.events |= POLLOUT;
        int n = poll(&p, 1, COALESCE_MS);
        if (n < 0 && errno != EINTR)
            break;
        if (n > 0 && (p.revents & POLLOUT))
            mosquitto_loop_write(mosq, 1);
        if (n == 0 || (p.revents & (POLLIN | POLLERR | POLLHUP))) {
            for (;;) {
                errno = 0;
                read_message = false;
                rc = mosquitto_loop_read(mosq, 1);
                if (rc != MOSQ_ERR_SUCCESS) {
                    fprintf(stderr, "bench_mqtt_count: connection lost: %s\n",
                            mosquitto_strerror(rc));
                    return 1;
                }
                /* EAGAIN may come from libmosquitto's internal socket pair (written for
                 * every queued PUBACK, read by nobody here): only a read that delivered
                 * nothing means the socket is drained, as in eddy's mqtt-broker node */
                if ((errno == EAGAIN || errno == EWOULDBLOCK) && !read_message)
                    break;
            }
        }
        if (time(NULL) != last_misc) {
            last_misc = time(NULL);
            mosquitto_loop_misc(mosq);
        }
    }
    mosquitto_disconnect(mosq);
    mosquitto_loop_write(mosq, 1);
    mosquitto_destroy(mosq);
    mosquitto_lib_cleanup();
    return 0;
usage:
    fprintf(stderr, "usage: bench_mqtt_count [-h HOST] -p PORT [-q 0|1|2]\n");
    return 2;
}
