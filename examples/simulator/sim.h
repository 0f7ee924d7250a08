/* sim.h: what the example device simulators share. Each example flow (the JSON files in
 * flows/) has a simulator that plays its devices over MQTT: it publishes their messages at a
 * steady rate and answers the actuator commands the flow sends, so a flow can be watched
 * end to end.
 *
 * A scenario (glasshouse.c, cat_feeder.c, turnstile.c) supplies the devices: what each one
 * publishes next and what a command does to it. sim.c owns the rest: options, the MQTT
 * connection, pacing, simulated time and the answers to commands.
 *
 * One thread: libmosquitto is driven with mosquitto_loop() between publishes, so scenario
 * callbacks never run concurrently and need no locks. */
#ifndef EDDY_SIM_H
#define EDDY_SIM_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

typedef struct sim_opts {
    const char *host;
    int port;
    int devices;       /* devices 1..devices */
    double rate;       /* messages per second per device (may be fractional) */
    int qos;           /* of the messages published and of the command subscription */
    long count;        /* stop after this many messages in all; 0 = run until interrupted */
    double time_scale; /* simulated ms per wall-clock ms: 60 runs an hour a minute */
    double ignore;     /* fraction of commands left unanswered (0..1), to show timeouts */
    unsigned seed;     /* of the simulator's random numbers; 0 = from the clock */
    int faults;        /* 1: some messages are bad on purpose (the default); 0: none */
} sim_opts;

/* What a scenario's 'next' made: one message to publish. */
typedef struct sim_message {
    char topic[128];
    char payload[1024];
    int len;  /* payload bytes; 0 = nothing to publish this turn */
    int kind; /* the scenario's own class of message (counted per class in the summary) */
} sim_message;

/* An actuator command, as the actuator node publishes it on
 * <app>/<deviceId>/actuator/<actuatorId>/set (the ids come from the topic). */
typedef struct sim_command {
    const char *device;         /* topic level 2 */
    const char *actuator;       /* topic level 4 */
    const char *command;        /* payload.command ("" if missing) */
    json_t *value;              /* payload.value (borrowed; NULL if missing) */
    const char *correlation_id; /* payload.correlationId ("" if missing): the same id again
                                 * is the same command, published again after a restart */
} sim_command;

typedef struct sim_scenario {
    const char *name;              /* program name, for messages */
    const char *app;               /* first topic level: commands come on <app>/+/actuator/+/set */
    const char *const *kind_names; /* names of the scenario's message kinds, for the summary */
    int kinds;
    void *(*create)(const sim_opts *o); /* the devices' state; NULL: out of memory */
    void (*destroy)(void *devices);
    /* Device 'device' (1-based) makes its 'seq'th message at simulated time 'now' (ms since
     * the epoch). */
    void (*next)(void *devices, int device, long seq, int64_t now, sim_message *m);
    /* Applies a command at simulated time 'now'. Returns 0 when the device accepts it (then
     * it answers), -1 when it has no such device or actuator (no answer, as a real device
     * would stay silent). May fill 'state' (up to 64 bytes) with the actuator's state after
     * the command, sent back in the answer as "state". */
    int (*command)(void *devices, const sim_command *c, int64_t now, char *state, size_t size);
} sim_scenario;

/* Runs a simulator: parses argv (--host, --port, --devices, --rate, --qos, --count,
 * --time-scale, --ignore-commands, --seed, --no-faults), connects, plays the scenario until
 * interrupted or --count messages have left, and prints a one-line JSON summary on stdout
 * ({"published":N,"commands":C,"answered":A,"kinds":{...}}). Returns the process's exit
 * status: 0, 1 (cannot connect), 2 (bad options). */
int sim_main(int argc, char **argv, const sim_scenario *sc);

/* Small helpers the scenarios share. */
/* The device number in an id such as "gh-003" (the digits after the last '-'); 0 if none. */
int sim_device_number(const char *id);
/* Random numbers from the run's seed (--seed makes a run repeatable): uniform in [0, 1),
 * and normal with mean 0 and deviation 1. */
double sim_random(void);
double sim_gauss(void);

#endif
