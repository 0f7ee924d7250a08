/* test_broker.c: see test_broker.h. */
#include "test_broker.h"

#include <arpa/inet.h>
#include <errno.h>
#include <mosquitto.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_BROKERS 8

/* pids of brokers still running, killed at exit even if a test failed half-way */
static pid_t running[MAX_BROKERS];

static void sleep_ms(int ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

static int free_port(void)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof(a);
    if (fd < 0 || bind(fd, (struct sockaddr *)&a, sizeof(a)) != 0 ||
        getsockname(fd, (struct sockaddr *)&a, &len) != 0) {
        if (fd >= 0)
            close(fd);
        return -1;
    }
    close(fd);
    return ntohs(a.sin_port);
}

static bool accepts(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    bool ok = fd >= 0 && connect(fd, (struct sockaddr *)&a, sizeof(a)) == 0;
    if (fd >= 0)
        close(fd);
    return ok;
}

void test_broker_kill_all(void)
{
    for (int i = 0; i < MAX_BROKERS; i++) {
        if (running[i] > 0) {
            kill(running[i], SIGKILL);
            waitpid(running[i], NULL, 0);
            running[i] = 0;
        }
    }
}

static int spawn(test_broker *b)
{
    char conf[128];
    snprintf(conf, sizeof(conf), "%s/mosquitto.conf", b->dir);
    FILE *f = fopen(conf, "w");
    if (!f)
        return -1;
    fprintf(f, "listener %d 127.0.0.1\nmax_queued_messages 100000\n", b->port);
    if (b->tls)
        fprintf(f, "cafile %s/ca.crt\ncertfile %s/server.crt\nkeyfile %s/server.key\n", b->dir,
                b->dir, b->dir);
    if (*b->user)
        fprintf(f, "allow_anonymous false\npassword_file %s/passwd\n", b->dir);
    else
        fprintf(f, "allow_anonymous true\n");
    fprintf(f, "%s\n", b->extra);
    fclose(f);
    char log[128];
    snprintf(log, sizeof(log), "%s/broker.log", b->dir);
    fflush(NULL); /* or the child's freopen writes our buffered output again */
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        if (!freopen(log, "a", stdout) || !freopen(log, "a", stderr))
            _exit(126);
        execlp("mosquitto", "mosquitto", "-c", conf, (char *)NULL);
        _exit(127);
    }
    b->pid = pid;
    for (int i = 0; i < MAX_BROKERS; i++) {
        if (running[i] == 0) {
            running[i] = pid;
            break;
        }
    }
    for (int i = 0; i < 500; i++) {
        if (accepts(b->port))
            return 0;
        int status;
        if (waitpid(pid, &status, WNOHANG) == pid) {
            fprintf(stderr, "test_broker: mosquitto exited (see %s)\n", log);
            for (int k = 0; k < MAX_BROKERS; k++)
                if (running[k] == pid)
                    running[k] = 0;
            b->pid = 0;
            return -1;
        }
        sleep_ms(10);
    }
    fprintf(stderr, "test_broker: mosquitto does not listen on %d\n", b->port);
    return -1;
}

int test_broker_start(test_broker *b, const char *extra_conf)
{
    static bool registered;
    if (!registered) {
        atexit(test_broker_kill_all);
        registered = true;
    }
    memset(b, 0, sizeof(*b));
    snprintf(b->dir, sizeof(b->dir), "/tmp/eddy-broker-XXXXXX");
    if (!mkdtemp(b->dir))
        return -1;
    snprintf(b->extra, sizeof(b->extra), "%s", extra_conf ? extra_conf : "");
    b->port = free_port();
    return b->port > 0 ? spawn(b) : -1;
}

void test_broker_stop(test_broker *b, int sig)
{
    if (b->pid <= 0)
        return;
    kill(b->pid, sig);
    waitpid(b->pid, NULL, 0);
    for (int i = 0; i < MAX_BROKERS; i++)
        if (running[i] == b->pid)
            running[i] = 0;
    b->pid = 0;
}

int test_broker_restart(test_broker *b)
{
    return spawn(b);
}

int test_broker_start_tls(test_broker *b)
{
    int rc = test_broker_start(b, NULL);
    if (rc != 0)
        return rc;
    test_broker_stop(b, SIGTERM);
    char cmd[2048];
    snprintf(cmd, sizeof(cmd),
             "(cd '%s' && openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=eddy-test-ca "
             "-keyout ca.key -out ca.crt && "
             "openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca "
             "-keyout other-ca.key -out other-ca.crt && "
             "openssl req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1 -keyout server.key "
             "-out server.csr && printf 'subjectAltName=IP:127.0.0.1' > san.ext && "
             "openssl x509 -req -in server.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 2 "
             "-extfile san.ext -out server.crt && chmod 0755 . && chmod 0644 *.crt *.key) "
             ">/dev/null 2>&1",
             b->dir);
    if (system(cmd) != 0) {
        fprintf(stderr, "test_broker: making certificates with openssl failed\n");
        return -1;
    }
    b->tls = true;
    return spawn(b);
}

int test_broker_start_auth(test_broker *b, const char *user, const char *password)
{
    int rc = test_broker_start(b, NULL);
    if (rc != 0)
        return rc;
    test_broker_stop(b, SIGTERM);
    char cmd[512];
    snprintf(cmd, sizeof(cmd), "mosquitto_passwd -b -c '%s/passwd' '%s' '%s' >/dev/null 2>&1",
             b->dir, user, password);
    char path[96];
    snprintf(path, sizeof(path), "%s/passwd", b->dir);
    /* mosquitto started as root runs as user mosquitto: it must be able to read these */
    if (system(cmd) != 0 || chmod(b->dir, 0755) != 0 || chmod(path, 0644) != 0) {
        fprintf(stderr, "test_broker: mosquitto_passwd failed\n");
        return -1;
    }
    snprintf(b->user, sizeof(b->user), "%s", user);
    return spawn(b);
}

/* ---- client ---- */

struct test_client {
    struct mosquitto *mosq;
    pthread_mutex_t mu;
    pthread_cond_t cond;
    json_t *received;
    int subacks;
    int last_acked_mid;
    bool connected;
};

static void on_message(struct mosquitto *m, void *data, const struct mosquitto_message *msg)
{
    test_client *c = data;
    json_t *rec = json_pack("{s:s, s:s%, s:i, s:b}", "topic", msg->topic, "payload",
                            msg->payload ? (const char *)msg->payload : "", (size_t)msg->payloadlen,
                            "qos", msg->qos, "retain", msg->retain);
    pthread_mutex_lock(&c->mu);
    json_array_append_new(c->received, rec);
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

static void on_subscribe(struct mosquitto *m, void *data, int mid, int n, const int *granted)
{
    test_client *c = data;
    pthread_mutex_lock(&c->mu);
    c->subacks++;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

static void on_publish(struct mosquitto *m, void *data, int mid)
{
    test_client *c = data;
    pthread_mutex_lock(&c->mu);
    c->last_acked_mid = mid;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

static void on_connect(struct mosquitto *m, void *data, int rc)
{
    test_client *c = data;
    pthread_mutex_lock(&c->mu);
    c->connected = rc == 0;
    pthread_cond_broadcast(&c->cond);
    pthread_mutex_unlock(&c->mu);
}

/* Waits on the client's condition until 'done' says so, up to 5 s. */
static bool wait_for(test_client *c, bool (*done)(test_client *c, int arg), int arg)
{
    struct timespec until;
    clock_gettime(CLOCK_REALTIME, &until);
    until.tv_sec += 5;
    pthread_mutex_lock(&c->mu);
    bool ok = true;
    while (!done(c, arg) && ok)
        ok = pthread_cond_timedwait(&c->cond, &c->mu, &until) == 0;
    ok = done(c, arg);
    pthread_mutex_unlock(&c->mu);
    return ok;
}

static bool is_connected(test_client *c, int arg)
{
    return c->connected;
}

static bool has_subacks(test_client *c, int n)
{
    return c->subacks >= n;
}

static bool mid_acked(test_client *c, int mid)
{
    return c->last_acked_mid == mid;
}

test_client *test_client_new(int port, const char *id, bool persistent)
{
    static bool lib_ready;
    if (!lib_ready) {
        mosquitto_lib_init();
        lib_ready = true;
    }
    test_client *c = calloc(1, sizeof(*c));
    pthread_mutex_init(&c->mu, NULL);
    pthread_cond_init(&c->cond, NULL);
    c->received = json_array();
    c->mosq = mosquitto_new(id, !persistent, c);
    mosquitto_message_callback_set(c->mosq, on_message);
    mosquitto_subscribe_callback_set(c->mosq, on_subscribe);
    mosquitto_publish_callback_set(c->mosq, on_publish);
    mosquitto_connect_callback_set(c->mosq, on_connect);
    if (mosquitto_connect(c->mosq, "127.0.0.1", port, 30) != MOSQ_ERR_SUCCESS ||
        mosquitto_loop_start(c->mosq) != MOSQ_ERR_SUCCESS || !wait_for(c, is_connected, 0)) {
        fprintf(stderr, "test_client: cannot connect to port %d\n", port);
        test_client_free(c);
        return NULL;
    }
    return c;
}

void test_client_free(test_client *c)
{
    if (!c)
        return;
    mosquitto_disconnect(c->mosq);
    mosquitto_loop_stop(c->mosq, true);
    mosquitto_destroy(c->mosq);
    json_decref(c->received);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cond);
    free(c);
}

int test_client_subscribe(test_client *c, const char *filter, int qos)
{
    pthread_mutex_lock(&c->mu);
    int want = c->subacks + 1;
    pthread_mutex_unlock(&c->mu);
    if (mosquitto_subscribe(c->mosq, NULL, filter, qos) != MOSQ_ERR_SUCCESS)
        return -1;
    return wait_for(c, has_subacks, want) ? 0 : -1;
}

int test_client_publish(test_client *c, const char *topic, const void *payload, size_t len, int qos,
                        bool retain)
{
    int mid = 0;
    if (mosquitto_publish(c->mosq, &mid, topic, (int)len, payload, qos, retain) != MOSQ_ERR_SUCCESS)
        return -1;
    return qos == 0 || wait_for(c, mid_acked, mid) ? 0 : -1;
}

json_t *test_client_take(test_client *c, bool clear)
{
    pthread_mutex_lock(&c->mu);
    json_t *copy = json_deep_copy(c->received);
    if (clear)
        json_array_clear(c->received);
    pthread_mutex_unlock(&c->mu);
    return copy;
}

size_t test_client_count(test_client *c)
{
    pthread_mutex_lock(&c->mu);
    size_t n = json_array_size(c->received);
    pthread_mutex_unlock(&c->mu);
    return n;
}
