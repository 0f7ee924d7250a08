/* turnstile.c: the turnstile example's devices (flows/turnstile.json). Each device is a gate:
 * a turnstile that reports every rotation with its direction, and a camera above it that
 * reports, once a minute, how many people came to the gate in that minute. Gates belong to
 * zones, two each (gate-01 and gate-02 to zone-1, gate-03 and gate-04 to zone-2, ...):
 *
 *   turnstile/gate-02/rotation {"eventId":"gate-02-1795449600000-8","deviceId":"gate-02",
 *                               "zone":"zone-1","ts":1795449624000,"direction":"in"}
 *   turnstile/gate-02/camera   {"eventId":"gate-02-1795449600000-20","deviceId":"gate-02",
 *                               "zone":"zone-1","ts":1795449600000,"people":7}
 *
 * A camera report's ts is the start of the minute it counts (minutes of the clock, so a
 * window of whole minutes gets whole reports); it leaves in the first slot after that
 * minute. Time is the gates' own, as in cat_feeder.c: message 'seq' of a gate is at the
 * run's start plus 'seq' slots of --time-scale * 1000 / --rate simulated ms. In a slot a
 * gate publishes its camera report when one is due, else, when a person comes (about 8 a
 * minute), the rotation. People go in or out, more often in while the zone holds fewer
 * than its target (which swings between 20 and 100 over two hours), and never out of an
 * empty zone.
 *
 * Malfunctions: gates 2, 5, 8, ... jam 20 simulated minutes into the run and every three
 * hours after. A jammed turnstile does not turn: people who come are seen by the camera and
 * turn back, and no rotation is reported. It stays jammed until it is reset. Some messages
 * are bad on purpose, for the flow's validation: a direction that is neither in nor out, a
 * negative count, JSON cut short, no deviceId (not with --no-faults).
 *
 * Commands: turnstile/<deviceId>/actuator/arm/set with command "reset" frees a jammed
 * turnstile; the gate answers on .../state with "free" (sim.c).
 *
 *   turnstile-sim [--devices N] [--rate R] [--time-scale S] ... (sim.h) */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define PI             3.141592653589793
#define MINUTE_MS      60000LL
#define JAM_AFTER_MS   (20 * MINUTE_MS)
#define JAM_EVERY_MS   (180 * MINUTE_MS)
#define PEOPLE_PER_MIN 8.0
#define FAULT_EVERY    31 /* with faults, one rotation in this many is bad, */
#define CAMERA_FAULT   13 /* and one camera report in this many */

enum { TS_ROTATION, TS_CAMERA, TS_BAD };
static const char *const kind_names[] = {"rotation", "camera", "bad"};

typedef struct ts_gate {
    int64_t minute; /* start of the minute the camera is counting; 0 before the first slot */
    int people;     /* people who came to the gate in that minute */
    bool jammed;
    int64_t jam_at; /* simulated time of the next jam; 0: never */
    long rotations; /* rotations reported, for the choice of bad ones */
    long reports;   /* camera reports, likewise */
} ts_gate;

typedef struct ts_site {
    int devices;
    int faults;     /* sim_opts.faults */
    double slot_ms; /* simulated ms per message turn */
    int64_t run_id; /* simulated time of the first slot: the run's start, in event ids */
    int *inside;    /* people in each zone (zone z at inside[z - 1]) */
    ts_gate gate[];
} ts_site;

static int zone_of(int d)
{
    return (d - 1) / 2 + 1;
}

static void *ts_create(const sim_opts *o)
{
    ts_site *s = calloc(1, sizeof(*s) + (size_t)o->devices * sizeof(ts_gate));
    if (!s)
        return NULL;
    s->inside = calloc((size_t)zone_of(o->devices), sizeof(int));
    if (!s->inside) {
        free(s);
        return NULL;
    }
    s->devices = o->devices;
    s->faults = o->faults;
    s->slot_ms = o->time_scale * 1000.0 / o->rate;
    return s;
}

static void ts_destroy(void *devices)
{
    ts_site *s = devices;
    if (s)
        free(s->inside);
    free(s);
}

static void ts_next(void *devices, int d, long seq, int64_t now, sim_message *m)
{
    ts_site *s = devices;
    ts_gate *g = &s->gate[d - 1];
    int zone = zone_of(d);
    int *inside = &s->inside[zone - 1];
    if (!s->run_id)
        s->run_id = now;
    int64_t ts = s->run_id + (int64_t)((double)seq * s->slot_ms);
    int64_t minute = ts - ts % MINUTE_MS;
    if (!g->minute) {
        g->minute = minute;
        g->jam_at = d % 3 == 2 ? s->run_id + JAM_AFTER_MS : 0;
    }
    if (g->jam_at && ts >= g->jam_at) {
        g->jammed = true;
        g->jam_at += JAM_EVERY_MS;
    }
    /* Every draw every slot, so the random numbers do not depend on when resets came. */
    double arrive = sim_random(), direction = sim_random(), miscount = sim_random();

    char fields[96];
    const char *topic_kind;
    bool bad;
    int fault = 0; /* of a bad rotation: 0 direction, 1 JSON cut short, 2 no deviceId */
    if (minute > g->minute) {
        /* The camera's report of the minute that ended; now and then one person off. */
        int people = g->people + (miscount < 0.03 ? 1 : miscount < 0.06 && g->people ? -1 : 0);
        bad = s->faults && g->reports++ % CAMERA_FAULT == 9;
        snprintf(fields, sizeof(fields), "\"ts\":%lld,\"people\":%d", (long long)g->minute,
                 bad ? -3 : people);
        g->minute = minute;
        g->people = 0;
        m->kind = TS_CAMERA;
        topic_kind = "camera";
    } else {
        double per_slot = 1.0 - exp(-PEOPLE_PER_MIN * s->slot_ms / (double)MINUTE_MS);
        if (arrive >= per_slot)
            return; /* nobody came */
        g->people++;
        if (g->jammed)
            return; /* turned back: the camera saw them, the turnstile did not turn */
        double target = 60.0 + 40.0 * sin(2 * PI * (double)(ts - s->run_id) / (120.0 * MINUTE_MS));
        double p_in = fmin(0.9, fmax(0.1, 0.5 + (target - *inside) / 100.0));
        bool in = direction < p_in || *inside == 0;
        long n = g->rotations++;
        bad = s->faults && n % FAULT_EVERY == 7;
        fault = (int)((n / FAULT_EVERY) % 3);
        /* A bad rotation is one the turnstile got wrong: it let nobody through. */
        if (!bad)
            *inside += in ? 1 : -1;
        snprintf(fields, sizeof(fields), "\"ts\":%lld,\"direction\":\"%s\"", (long long)ts,
                 bad && fault == 0 ? "sideways"
                 : in              ? "in"
                                   : "out");
        m->kind = TS_ROTATION;
        topic_kind = "rotation";
    }
    if (bad)
        m->kind = TS_BAD;
    snprintf(m->topic, sizeof(m->topic), "turnstile/gate-%02d/%s", d, topic_kind);
    if (bad && fault == 2) /* a device that lost its settings */
        m->len = snprintf(m->payload, sizeof(m->payload),
                          "{\"eventId\":\"gate-%02d-%lld-%ld\",\"zone\":\"zone-%d\",%s}", d,
                          (long long)s->run_id, seq, zone, fields);
    else
        m->len = snprintf(m->payload, sizeof(m->payload),
                          "{\"eventId\":\"gate-%02d-%lld-%ld\",\"deviceId\":\"gate-%02d\","
                          "\"zone\":\"zone-%d\",%s}",
                          d, (long long)s->run_id, seq, d, zone, fields);
    if (bad && fault == 1)
        m->len /= 2; /* JSON cut short, as by a flaky link */
}

static int ts_command(void *devices, const sim_command *c, int64_t now, char *state, size_t size)
{
    (void)now;
    ts_site *s = devices;
    int d = sim_device_number(c->device);
    if (d < 1 || d > s->devices || strcmp(c->actuator, "arm") != 0 ||
        strcmp(c->command, "reset") != 0)
        return -1;
    s->gate[d - 1].jammed = false;
    snprintf(state, size, "free");
    return 0;
}

static const sim_scenario turnstile = {
    .name = "turnstile-sim",
    .app = "turnstile",
    .kind_names = kind_names,
    .kinds = 3,
    .create = ts_create,
    .destroy = ts_destroy,
    .next = ts_next,
    .command = ts_command,
};

int main(int argc, char **argv)
{
    return sim_main(argc, argv, &turnstile);
}
