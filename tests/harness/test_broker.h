/* test_broker.h: a real mosquitto broker for integration tests, started on 127.0.0.1 on a
 * free port in a temporary folder, and a small libmosquitto client (with its own network
 * thread) that publishes and records what it receives. */
#ifndef EDDY_TEST_BROKER_H
#define EDDY_TEST_BROKER_H

#include <jansson.h>
#include <pthread.h>
#include <stdbool.h>
#include <sys/types.h>

typedef struct test_broker {
    pid_t pid;
    int port;
    char dir[64];    /* temporary folder: config, password file, log */
    char extra[512]; /* extra mosquitto.conf lines */
    char user[64];   /* set: only this user may connect (test_broker_start_auth) */
    bool tls;        /* the listener speaks TLS (test_broker_start_tls) */
} test_broker;

/* Starts mosquitto with 'extra_conf' lines added (NULL for none); picks a free port the
 * first time and keeps it across restarts. Waits until it accepts connections. Returns 0,
 * or -1 with a message on stderr. */
int test_broker_start(test_broker *b, const char *extra_conf);
/* Sends 'sig' (SIGKILL to crash it, SIGTERM to stop it) and waits for the process. */
void test_broker_stop(test_broker *b, int sig);
/* Starts it again on the same port with the same configuration. */
int test_broker_restart(test_broker *b);
/* Starts a broker with a TLS listener (certificates made with openssl in its folder:
 * ca.crt signs server.crt for 127.0.0.1; other-ca.crt is an unrelated CA). */
int test_broker_start_tls(test_broker *b);
/* Starts a broker that accepts only 'user' with 'password' (needs mosquitto_passwd). */
int test_broker_start_auth(test_broker *b, const char *user, const char *password);
/* Kills every broker still running (registered with atexit by the first start). */
void test_broker_kill_all(void);

typedef struct test_client test_client;

/* Connects a client (clean session unless 'persistent') and starts its network thread.
 * NULL on failure. */
test_client *test_client_new(int port, const char *id, bool persistent);
void test_client_free(test_client *c);
/* Subscribes and waits for the SUBACK (up to 5 s). Returns 0 or -1. */
int test_client_subscribe(test_client *c, const char *filter, int qos);
/* Publishes 'len' bytes and, for QoS > 0, waits until the broker acknowledged (5 s). */
int test_client_publish(test_client *c, const char *topic, const void *payload, size_t len, int qos,
                        bool retain);
/* Messages received so far: [{"topic","payload" (text),"qos","retain"}]. New reference;
 * 'clear' empties the record. */
json_t *test_client_take(test_client *c, bool clear);
size_t test_client_count(test_client *c);

#endif
