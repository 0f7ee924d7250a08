/* glasshouse.c: the glasshouse example's devices (flows/glasshouse.json). Each device is a
 * climate sensor in one glasshouse with a vent and a heater. It publishes a reading as JSON
 * to glasshouse/<deviceId>/reading:
 *
 *   {"eventId":"gh-003-1795449600000-42","deviceId":"gh-003","sensorId":"gh-003-climate",
 *    "ts":1795449600000,"temperature":24.31,"humidity":61.2}
 *
 * The temperature drifts toward a target: a slow wave (the weather), plus hot spells in one
 * glasshouse in five (gh-002, gh-007, ...) and cold spells in another (gh-004, gh-009, ...)
 * every 20 minutes from the start,
 * minus 10 C while the vent is open, plus 10 C while the heater is on. So the flow's alerts
 * raise, its commands open the vent or start the heater, the temperature answers, and the
 * alerts clear. Some readings are bad on purpose, for the flow's validation: a temperature
 * that is not a number, a humidity over 100 %, JSON cut short (not with --no-faults).
 *
 * Commands: glasshouse/<deviceId>/actuator/vent/set with value "open" or "closed", and
 * .../heater/set with "on" or "off"; the device answers on .../state (sim.c).
 * Event ids are unique per run (device, start time, sequence), so a reading delivered twice
 * is recognisably the same event.
 *
 *   glasshouse-sim [--devices N] [--rate R] [--time-scale S] ... (sim.h) */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define PI 3.141592653589793

enum { GH_VALID, GH_BAD };
static const char *const kind_names[] = {"valid", "bad"};

typedef struct gh_device {
    double temperature;
    bool vent_open, heater_on;
    int64_t last; /* simulated time of the last reading; 0 before the first */
} gh_device;

typedef struct gh_house {
    int devices;
    int faults;     /* sim_opts.faults */
    int64_t run_id; /* simulated time of the first reading: the run's start, in event ids */
    gh_device device[];
} gh_house;

static void *gh_create(const sim_opts *o)
{
    gh_house *h = calloc(1, sizeof(*h) + (size_t)o->devices * sizeof(gh_device));
    if (h) {
        h->devices = o->devices;
        h->faults = o->faults;
    }
    return h;
}

static void gh_destroy(void *devices)
{
    free(devices);
}

/* The temperature the glasshouse would settle at 'elapsed' ms (simulated) into the run:
 * weather, spells, vent, heater. Spells recur every 20 minutes from the start, so a short
 * run sees them: gh-002's glasshouse runs hot in minutes 0-8, gh-004's cold in 3-11. */
static double target_temperature(int d, const gh_device *dev, int64_t elapsed)
{
    double weather = 21.0 + 4.0 * sin(2 * PI * (double)elapsed / 1800000.0 + d * 0.7);
    long minute = (long)((elapsed / 60000) % 20);
    double spell = 0;
    if (d % 5 == 2 && minute < 8)
        spell = 14.0;
    else if (d % 5 == 4 && minute >= 3 && minute < 11)
        spell = -16.0;
    return weather + spell + (dev->vent_open ? -10.0 : 0.0) + (dev->heater_on ? 10.0 : 0.0);
}

static void gh_next(void *devices, int d, long seq, int64_t now, sim_message *m)
{
    gh_house *h = devices;
    gh_device *dev = &h->device[d - 1];
    if (!h->run_id)
        h->run_id = now;
    double target = target_temperature(d, dev, now - h->run_id);
    if (!dev->last) {
        dev->temperature = target;
    } else {
        /* First-order lag with a one-minute time constant. */
        double dt = (double)(now - dev->last) / 1000.0;
        dev->temperature += (target - dev->temperature) * (1.0 - exp(-dt / 60.0));
    }
    dev->last = now;
    double temperature = dev->temperature + 0.05 * sim_gauss();
    double humidity = 60.0 - 1.5 * (temperature - 22.0) + 0.5 * sim_gauss();
    humidity = humidity < 5 ? 5 : humidity > 99 ? 99 : humidity;

    char t_text[32], h_text[32];
    snprintf(t_text, sizeof(t_text), "%.2f", temperature);
    snprintf(h_text, sizeof(h_text), "%.1f", humidity);
    m->kind = GH_VALID;
    if (!h->faults) {
        /* every reading good */
    } else if (seq % 50 == 7) {
        snprintf(t_text, sizeof(t_text), "\"n/a\""); /* a sensor fault */
        m->kind = GH_BAD;
    } else if (seq % 173 == 11) {
        snprintf(h_text, sizeof(h_text), "140.0"); /* out of range */
        m->kind = GH_BAD;
    }
    snprintf(m->topic, sizeof(m->topic), "glasshouse/gh-%03d/reading", d);
    m->len = snprintf(m->payload, sizeof(m->payload),
                      "{\"eventId\":\"gh-%03d-%lld-%ld\",\"deviceId\":\"gh-%03d\",\"sensorId\":"
                      "\"gh-%03d-climate\",\"ts\":%lld,\"temperature\":%s,\"humidity\":%s}",
                      d, (long long)h->run_id, seq, d, d, (long long)now, t_text, h_text);
    if (h->faults && seq % 211 == 5) {
        m->len /= 2; /* JSON cut short, as by a flaky link */
        m->kind = GH_BAD;
    }
}

static int gh_command(void *devices, const sim_command *c, int64_t now, char *state, size_t size)
{
    (void)now;
    gh_house *h = devices;
    int d = sim_device_number(c->device);
    if (d < 1 || d > h->devices)
        return -1;
    gh_device *dev = &h->device[d - 1];
    const char *value = json_string_value(c->value);
    if (!value)
        value = c->command; /* "open", "on", ... as the command itself */
    if (strcmp(c->actuator, "vent") == 0) {
        if (strcmp(value, "open") == 0 || strcmp(value, "closed") == 0)
            dev->vent_open = strcmp(value, "open") == 0;
        else
            return -1;
        snprintf(state, size, "%s", dev->vent_open ? "open" : "closed");
        return 0;
    }
    if (strcmp(c->actuator, "heater") == 0) {
        if (strcmp(value, "on") == 0 || strcmp(value, "off") == 0)
            dev->heater_on = strcmp(value, "on") == 0;
        else
            return -1;
        snprintf(state, size, "%s", dev->heater_on ? "on" : "off");
        return 0;
    }
    return -1;
}

static const sim_scenario glasshouse = {
    .name = "glasshouse-sim",
    .app = "glasshouse",
    .kind_names = kind_names,
    .kinds = 2,
    .create = gh_create,
    .destroy = gh_destroy,
    .next = gh_next,
    .command = gh_command,
};

int main(int argc, char **argv)
{
    return sim_main(argc, argv, &glasshouse);
}
