/* cat_feeder.c: the cat feeder example's devices (flows/cat-feeder.json). Each device is a
 * feeder with a button the cat presses when it wants food, a bowl on a scale, and a
 * dispenser. It publishes presses and bowl weights as JSON:
 *
 *   catfeeder/cf-002/button  {"eventId":"cf-002-1795449600000-17","deviceId":"cf-002",
 *                             "ts":1795451640000}
 *   catfeeder/cf-002/bowl    {"eventId":"cf-002-1795449600000-20","deviceId":"cf-002",
 *                             "ts":1795452000000,"grams":11.4}
 *
 * Time is the feeder's own: message 'seq' of a device is at the run's start plus 'seq'
 * slots of --time-scale * 1000 / --rate simulated ms (one slot per message turn), and the
 * cats' day starts at 06:00 when the simulator starts. So the messages of a run depend only
 * on --seed and the options, not on the time of day or on how fast the flow answers: the
 * same seed gives the same presses at the same offsets from the start (only the UTC days
 * the flow counts portions in fall elsewhere). In a slot a feeder publishes a press (when
 * the cat presses), else a bowl weight when one is due (every 20 simulated minutes), else
 * nothing. The cats of cf-002, cf-007, ... are greedy: they press several times an hour
 * from 06:00 to 22:00 and twice an hour at night, so the flow's daily limit and minimum gap
 * refuse most of their presses. The others press around meal times (06-08 and 17-19) and
 * now and then otherwise. Some messages are bad on purpose, for the flow's validation: no
 * deviceId or another feeder's, a time or weight that is not a number, JSON cut short (not
 * with --no-faults).
 *
 * Commands: catfeeder/<deviceId>/actuator/dispenser/set with command "dispense" and the
 * portion in grams as value; the dispenser drops it into the bowl (the cat eats it, half a
 * gram a minute) and answers on .../state with the bowl's weight (sim.c). A command seen
 * before (same correlation id, published again after a restart of eddy) is answered
 * without dispensing twice.
 *
 *   cat-feeder-sim [--devices N] [--rate R] [--time-scale S] ... (sim.h) */
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

#define MINUTE_MS     60000.0
#define HOUR_MS       3600000LL
#define BOWL_EVERY_MS (20 * 60000LL)
#define EAT_G_PER_MIN 0.5
#define MAX_PORTION_G 100.0
#define REMEMBERED    16 /* correlation ids a dispenser remembers */
#define FAULT_EVERY   23 /* one message in this many is bad (with faults) */

enum { CF_PRESS, CF_BOWL, CF_BAD };
static const char *const kind_names[] = {"press", "bowl", "bad"};

typedef struct cf_device {
    double bowl;               /* grams in the bowl */
    int64_t last;              /* simulated time of the last slot; 0 before the first */
    int64_t bowl_due;          /* simulated time of the next bowl weight */
    long messages;             /* messages published, for the choice of bad ones */
    char seen[REMEMBERED][40]; /* correlation ids of the last commands, a ring */
    int seen_next;
} cf_device;

typedef struct cf_feeders {
    int devices;
    int faults;     /* sim_opts.faults */
    double slot_ms; /* simulated ms per message turn */
    int64_t run_id; /* simulated time of the first slot: the run's start, in event ids */
    cf_device device[];
} cf_feeders;

static void *cf_create(const sim_opts *o)
{
    cf_feeders *f = calloc(1, sizeof(*f) + (size_t)o->devices * sizeof(cf_device));
    if (f) {
        f->devices = o->devices;
        f->faults = o->faults;
        f->slot_ms = o->time_scale * 1000.0 / o->rate;
        for (int d = 0; d < o->devices; d++)
            f->device[d].bowl = 10.0;
    }
    return f;
}

static void cf_destroy(void *devices)
{
    free(devices);
}

/* How often the cat of feeder 'd' presses at hour 'hour' of its day, per hour. */
static double presses_per_hour(int d, int hour)
{
    if (d % 5 == 2) /* greedy */
        return hour >= 6 && hour < 22 ? 6.0 : 2.0;
    if ((hour >= 6 && hour < 8) || (hour >= 17 && hour < 19))
        return 3.0;
    return 0.25;
}

static void cf_next(void *devices, int d, long seq, int64_t now, sim_message *m)
{
    cf_feeders *f = devices;
    cf_device *dev = &f->device[d - 1];
    if (!f->run_id)
        f->run_id = now;
    int64_t ts = f->run_id + (int64_t)((double)seq * f->slot_ms);
    if (!dev->last)
        dev->bowl_due = ts;
    else
        dev->bowl = fmax(0.0, dev->bowl - EAT_G_PER_MIN * (double)(ts - dev->last) / MINUTE_MS);
    dev->last = ts;
    /* Both draws every slot, so the sequence of random numbers (and with it every press)
     * does not depend on what the bowl holds, which depends on when commands came. */
    double u = sim_random();
    double noise = sim_gauss();
    int hour = (int)((6 + (ts - f->run_id) / HOUR_MS) % 24);
    double p = 1.0 - exp(-presses_per_hour(d, hour) * f->slot_ms / (double)HOUR_MS);

    char dev_field[32], ts_text[32], grams_text[32];
    snprintf(dev_field, sizeof(dev_field), "\"deviceId\":\"cf-%03d\",", d);
    snprintf(ts_text, sizeof(ts_text), "%lld", (long long)ts);
    snprintf(grams_text, sizeof(grams_text), "%.1f", fmax(0.0, dev->bowl + 0.3 * noise));
    bool press = u < p;
    if (press) {
        m->kind = CF_PRESS;
    } else if (ts >= dev->bowl_due) {
        m->kind = CF_BOWL;
        while (dev->bowl_due <= ts)
            dev->bowl_due += BOWL_EVERY_MS;
    } else {
        return; /* nothing this slot */
    }
    long n = dev->messages++;
    bool bad = f->faults && n % FAULT_EVERY == 11;
    int fault = (int)((n / FAULT_EVERY) % 4);
    if (bad) {
        m->kind = CF_BAD;
        if (fault == 0)
            dev_field[0] = '\0'; /* no deviceId */
        else if (fault == 1)
            snprintf(ts_text, sizeof(ts_text), "\"soon\"");
        else if (fault == 3 && press)
            snprintf(dev_field, sizeof(dev_field), "\"deviceId\":\"cf-%03d\",", d + 1);
        else if (fault == 3)
            snprintf(grams_text, sizeof(grams_text), "\"n/a\"");
    }
    snprintf(m->topic, sizeof(m->topic), "catfeeder/cf-%03d/%s", d, press ? "button" : "bowl");
    if (press)
        m->len = snprintf(m->payload, sizeof(m->payload),
                          "{\"eventId\":\"cf-%03d-%lld-%ld\",%s\"ts\":%s}", d, (long long)f->run_id,
                          seq, dev_field, ts_text);
    else
        m->len = snprintf(m->payload, sizeof(m->payload),
                          "{\"eventId\":\"cf-%03d-%lld-%ld\",%s\"ts\":%s,\"grams\":%s}", d,
                          (long long)f->run_id, seq, dev_field, ts_text, grams_text);
    if (bad && fault == 2)
        m->len /= 2; /* JSON cut short, as by a flaky link */
}

static int cf_command(void *devices, const sim_command *c, int64_t now, char *state, size_t size)
{
    (void)now;
    cf_feeders *f = devices;
    int d = sim_device_number(c->device);
    if (d < 1 || d > f->devices || strcmp(c->actuator, "dispenser") != 0 ||
        strcmp(c->command, "dispense") != 0 || !json_is_number(c->value))
        return -1;
    double grams = json_number_value(c->value);
    if (!(grams > 0 && grams <= MAX_PORTION_G))
        return -1;
    cf_device *dev = &f->device[d - 1];
    bool seen = false;
    for (int i = 0; i < REMEMBERED && *c->correlation_id; i++)
        seen = seen || strcmp(dev->seen[i], c->correlation_id) == 0;
    if (!seen) {
        dev->bowl += grams;
        snprintf(dev->seen[dev->seen_next], sizeof(dev->seen[0]), "%s", c->correlation_id);
        dev->seen_next = (dev->seen_next + 1) % REMEMBERED;
    }
    snprintf(state, size, "bowl %.0f g", dev->bowl);
    return 0;
}

static const sim_scenario cat_feeder = {
    .name = "cat-feeder-sim",
    .app = "catfeeder",
    .kind_names = kind_names,
    .kinds = 3,
    .create = cf_create,
    .destroy = cf_destroy,
    .next = cf_next,
    .command = cf_command,
};

int main(int argc, char **argv)
{
    return sim_main(argc, argv, &cat_feeder);
}
