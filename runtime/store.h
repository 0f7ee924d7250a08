/* store.h: the event store. One LMDB environment in the data folder holds every event eddy
 * took in: an append-only log in global order ($all), split into streams (a device, an
 * order) in which each event has a version, with indexes by stream and version, by event
 * id and by stream and event time. Appends are optimistic and idempotent (modelled on
 * KurrentDB); they are grouped into one write transaction per loop iteration and committed
 * before the loop sleeps, under a durability policy; acknowledgements wait for the commit.
 * Reading is by iterators over a position, stream or time range; subscriptions follow the
 * log through commit listeners and keep checkpoints in the store.
 *
 * States of a store and the function behind each transition:
 *
 *   closed --eddy_store_open--> idle --eddy_store_append--> grouping (write txn open)
 *     grouping --commit (before-sleep hook, eddy_store_commit, group full)--> idle
 *     grouping --LMDB error (map full, I/O)--> idle (the whole group is lost; every
 *                                                    waiter of it hears EDDY_EIO)
 *     idle|grouping --eddy_store_close--> closed (a pending group is committed first)
 *
 * Guarantees:
 *   1. An event appended in a group is readable by later appends of the same group (version
 *      checks and idempotency see it) but by no reader until the group commits.
 *   2. A waiter (eddy_store_when_committed) runs after the group that was open when it was
 *      registered has committed under the durability policy, or failed. Nothing appended
 *      before it is acknowledged before that.
 *   3. Positions are gapless and start at 1; versions inside a stream start at 0 (as
 *      KurrentDB's event numbers). An event id is stored at most once in the whole store.
 *   4. Bad input is never dropped: an event that cannot be stored (invalid JSON body,
 *      missing or invalid stream, body over the size limit, invalid id, type or time) is
 *      appended to the stream "$deadletter" with the reason and the original bytes.
 *
 * Durability policies (eddy_store_sync):
 *   always    every commit is fsynced (LMDB's own durable commit) before any waiter runs:
 *             an acknowledged event survives a process crash and a power cut. The default:
 *             the store is the source of truth, and group commit makes one fsync cover
 *             every append of a loop iteration, so throughput comes from batching.
 *   interval  commits are written without fsync (MDB_NOSYNC) and the file is fsynced at
 *             most every N ms: a process crash loses nothing (the data is in the OS page
 *             cache), a power cut or kernel crash loses up to the last N ms of
 *             acknowledged events, and may damage the file if the file system reorders
 *             writes (LMDB's caveat for MDB_NOSYNC).
 *   never     no fsync except at close: a process crash loses nothing; a power cut loses
 *             whatever the OS had not written yet, and may damage the file as above.
 *
 * Caveats (LMDB's, and what they mean here):
 *   - Open a data folder in one process at a time for writing; the CLI may read (and even
 *     import) while eddy runs, but a writer in another process blocks eddy's appends
 *     until its transaction ends.
 *   - A durable commit runs on the loop thread in the before-sleep hook (about 0.3-0.5 ms
 *     of fsync per group, not per event).
 *   - Long-lived read transactions keep old pages from being reused and grow the file;
 *     iterators can be paused (eddy_store_iter_pause) between chunks for that reason.
 *   - No network file systems. The file never shrinks.
 *
 * Threads: every function is for one thread (the loop thread when attached). */
#ifndef EDDY_STORE_H
#define EDDY_STORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "err.h"
#include "loop.h"

typedef struct eddy_store eddy_store;
typedef struct eddy_store_iter eddy_store_iter;

/* ---- constants ---- */

/* Expected versions (KurrentDB's values); an exact version is >= 0. */
#define EDDY_STORE_ANY           (-2) /* no check */
#define EDDY_STORE_NO_STREAM     (-1) /* the stream must not exist yet */
#define EDDY_STORE_STREAM_EXISTS (-4) /* the stream must have at least one event */

#define EDDY_STORE_TIME_NONE         INT64_MIN     /* "no event time given" / "unbounded" */
#define EDDY_STORE_NAME_MAX          255           /* bytes of a stream name, type or id */
#define EDDY_STORE_DEADLETTER_STREAM "$deadletter" /* where bad input goes */
#define EDDY_STORE_FILE              "events.mdb"  /* inside the data folder */
#define EDDY_STORE_FORMAT            1             /* record format written by this eddy */

typedef enum eddy_store_sync {
    EDDY_STORE_SYNC_ALWAYS = 0, /* default; see "Durability policies" above */
    EDDY_STORE_SYNC_INTERVAL,
    EDDY_STORE_SYNC_NEVER,
} eddy_store_sync;

typedef struct eddy_store_opts {
    eddy_store_sync sync;     /* durability policy */
    int64_t sync_interval_ms; /* interval: longest time between fsyncs; 0 = 1000 */
    size_t max_body;          /* bytes of one event's JSON body; 0 = 1 MiB */
    size_t map_size;          /* bytes the file may grow to; 0 = 16 GiB (address space) */
    size_t group_max;         /* events in one group before it commits early; 0 = 10000 */
    int64_t group_linger_ms;  /* ms a group may stay open while input waits (below); 0 = 50,
                                 negative = never */
    bool read_only;           /* open for reading only (the CLI's stats, read, export) */
} eddy_store_opts;

/* Parses "always", "never", "interval" or "interval:N" (N ms) into 'opts'. */
int eddy_store_sync_parse(const char *text, eddy_store_opts *opts, eddy_err *err);

/* ---- opening ---- */

/* Opens (creating if needed, unless read_only) the store in folder 'dir' (created if
 * missing). 'opts' may be NULL for the defaults. Errors: EDDY_EIO when the folder or file
 * cannot be used, with the reason; a damaged or foreign file is reported as such ("is not
 * an eddy event store", "is damaged: ..."), never a crash; EDDY_EUNSUPPORTED for a file
 * written by a newer eddy. Ownership: new, eddy_store_close. */
eddy_store *eddy_store_open(const char *dir, const eddy_store_opts *opts, eddy_err *err);
/* Commits a pending group (running its waiters), fsyncs, and closes. Accepts NULL. */
void eddy_store_close(eddy_store *st);
/* The file's path ("DIR/events.mdb"). Borrowed for the life of 'st'. */
const char *eddy_store_path(const eddy_store *st);

/* Attaches 'st' to 'loop': groups commit in a before-sleep hook, waiters hold the loop,
 * ingest times come from the loop's wall clock, the interval policy syncs from a timer.
 * While a source says input is waiting (eddy_loop_input_left: MQTT stopped at its batch
 * limit), the group stays open into the next turns, up to group_linger_ms after it began
 * and 500 events, so that one commit covers a burst rather than each turn's 64 messages.
 * Without a loop, groups commit only through eddy_store_commit (CLI, benchmarks). */
int eddy_store_attach(eddy_store *st, eddy_loop *loop, eddy_err *err);
/* Commits what is pending, runs waiters, and removes the hook and timer. */
void eddy_store_detach(eddy_store *st);

/* ---- appending ---- */

/* Outcome of one event of an append. */
typedef enum eddy_store_outcome {
    EDDY_STORE_WRITTEN = 1,  /* stored now at 'position' */
    EDDY_STORE_EXISTING,     /* its id was stored before: nothing written, 'position' and
                                'version' are those of the stored event */
    EDDY_STORE_DEADLETTERED, /* bad input: stored in $deadletter at 'position' */
    EDDY_STORE_REFUSED,      /* the append was refused (the call's return code says why) */
} eddy_store_outcome;

/* One event to append ("in" fields) and what became of it ("out" fields). */
typedef struct eddy_store_event {
    const char *type;    /* in: event type; NULL or "" = "event" */
    const char *id;      /* in: event id; NULL or "" = a new UUIDv7 */
    int64_t time;        /* in: event time, ms since the epoch; EDDY_STORE_TIME_NONE = the
                            ingest time */
    const char *data;    /* in: the body as JSON text (any JSON value), 'data_len' bytes */
    size_t data_len;     /* in */
    const char *invalid; /* in: NULL, or why the caller found the event bad (such as "invalid
                            event time"; must outlive the caller's use of 'reason'): it goes
                            to $deadletter */
    int outcome;         /* out: eddy_store_outcome */
    uint64_t position;   /* out: WRITTEN, EXISTING, DEADLETTERED */
    int64_t version;     /* out: version in its stream (in $deadletter when DEADLETTERED) */
    const char *reason;  /* out: DEADLETTERED: why (static text or 'invalid'); NULL otherwise */
    char made_id[40];    /* out: the generated id when 'id' was empty */
} eddy_store_event;

typedef struct eddy_store_result {
    int64_t current_version; /* the stream's last version after the call (-1: no stream);
                                on EDDY_ECONFLICT the version found */
    size_t written;          /* events stored in the stream now */
    size_t existing;         /* events found stored already */
    size_t deadlettered;     /* events sent to $deadletter */
} eddy_store_result;

/* Appends 'count' events to 'stream' if its current version satisfies 'expected'
 * (EDDY_STORE_ANY, _NO_STREAM, _STREAM_EXISTS or an exact version N: the stream's last
 * event has version N). The events join the open group (one is started if none); they are
 * committed in the before-sleep hook (or by eddy_store_commit), so use
 * eddy_store_when_committed before acknowledging them.
 *
 * Idempotency, as KurrentDB: with an exact 'expected' below the current version the
 * append succeeds without writing when the events at versions expected+1.. have the same
 * ids in the same order, and is refused (EDDY_ECONFLICT) when they do not or when the
 * batch runs past the stream's end; with ANY/STREAM_EXISTS it succeeds without writing
 * when every id is stored in this stream, and is refused (EDDY_ECONFLICT) when only a
 * leading part is. Deliberate differences: ids are unique in the whole store, so where
 * KurrentDB would store an id a second time (an exact expected version equal to the
 * current one, with ids already in the stream) eddy stores nothing and reports the stored
 * events (EXISTING); an id stored in another stream refuses the append (EDDY_EDUPLICATE).
 *
 * Events that cannot be stored go to $deadletter (outcome DEADLETTERED) and the rest are
 * appended as the batch; a missing or invalid 'stream' dead-letters every event. Names
 * starting with '$' are reserved for eddy.
 *
 * Returns EDDY_OK (each event's outcome says what happened), EDDY_ECONFLICT (nothing
 * written but dead letters; 'res->current_version' is the stream's version),
 * EDDY_EDUPLICATE (an id is stored in another stream, or appears twice in the batch, or
 * the batch is stored only in part: refused), EDDY_EINVAL (read-only store), EDDY_EIO
 * (LMDB failed: the whole open group is lost, its waiters hear so).
 * Ownership: every pointer is borrowed for the call; 'res' may be NULL. */
int eddy_store_append(eddy_store *st, const char *stream, int64_t expected,
                      eddy_store_event *events, size_t count, eddy_store_result *res,
                      eddy_err *err);

/* Called once the group that was open when the waiter was registered (or the next one, if
 * none was open) has committed: 'status' EDDY_OK, or EDDY_EIO with 'error' naming the
 * cause (then nothing of that group was stored). Runs from the before-sleep hook, from
 * eddy_store_commit, or from detach/close; never from inside eddy_store_append. */
typedef void (*eddy_store_commit_fn)(eddy_store *st, int status, const char *error, void *data);
/* Registers a waiter; while it waits the attached loop is held (acks wait). EDDY_ENOMEM. */
int eddy_store_when_committed(eddy_store *st, eddy_store_commit_fn fn, void *data, eddy_err *err);
/* Removes waiters registered with 'fn' and 'data' without calling them (a closing node). */
void eddy_store_cancel_waiters(eddy_store *st, eddy_store_commit_fn fn, void *data);

/* Commits the open group now (fsync per policy), then runs waiters and listeners. EDDY_OK
 * or EDDY_EIO. */
int eddy_store_commit(eddy_store *st, eddy_err *err);
/* true while a group is open. */
bool eddy_store_pending(const eddy_store *st);

/* A listener hears, after each commit that stored events, the last committed position.
 * Subscriptions use it to leave the catch-up wait. */
typedef void (*eddy_store_listen_fn)(eddy_store *st, uint64_t last_position, void *data);
int eddy_store_listen(eddy_store *st, eddy_store_listen_fn fn, void *data, eddy_err *err);
void eddy_store_unlisten(eddy_store *st, eddy_store_listen_fn fn, void *data);

/* ---- reading ---- */

/* A stored event. Every pointer is borrowed from the store's memory map and valid until
 * the iterator moves, pauses or closes; strings are NUL-terminated ('data' too). */
typedef struct eddy_store_record {
    uint64_t position;
    int64_t version;
    int64_t time;        /* event time, ms since the epoch */
    int64_t ingest_time; /* when it was appended, ms since the epoch */
    const char *stream;
    const char *type;
    const char *id;
    const char *data; /* JSON text, 'data_len' bytes */
    size_t data_len;
} eddy_store_record;

/* What an iterator reads. Zero-initialise, then set what you need. */
typedef struct eddy_store_query {
    const char *stream;     /* NULL: every stream, in $all order; else that stream */
    uint64_t from_position; /* inclusive; 0 = from the start */
    uint64_t to_position;   /* inclusive; 0 = to the end */
    bool has_version;       /* stream only: limit to [from_version, to_version] */
    int64_t from_version;   /* inclusive */
    int64_t to_version;     /* inclusive */
    bool by_time;           /* order by event time (then position) using the stream+time
                               index; needs 'stream' */
    int64_t from_time;      /* event time bounds (ms, inclusive); used when 'has_time' */
    int64_t to_time;
    bool has_time; /* filter by [from_time, to_time]; without 'by_time' this scans */
} eddy_store_query;

/* Ownership: new, eddy_store_iter_close. NULL with 'err' set (EDDY_EINVAL for a bad
 * query, EDDY_EIO). The iterator sees the events committed when it starts reading, and
 * after a pause those committed since. */
eddy_store_iter *eddy_store_iter_open(eddy_store *st, const eddy_store_query *q, eddy_err *err);
/* Reads the next event into 'rec': 1, 0 at the end of what is committed (calling again
 * after eddy_store_iter_pause picks up events committed since), or a negative code
 * (EDDY_EIO for a damaged record, naming its position). */
int eddy_store_iter_next(eddy_store_iter *it, eddy_store_record *rec, eddy_err *err);
/* Ends the iterator's read transaction (records read before become invalid); the next
 * eddy_store_iter_next starts a new one after the last event read. */
void eddy_store_iter_pause(eddy_store_iter *it);
void eddy_store_iter_close(eddy_store_iter *it);

/* The body of 'rec' as a JSON value, with eddy_json_loadb's number rules, several times
 * faster than parsing it (stored bodies are compact and were checked at append).
 * Ownership: new. NULL with EDDY_EIO in 'err' when the record is damaged. */
json_t *eddy_store_record_json(const eddy_store_record *rec, eddy_err *err);

/* The last committed position (0 for an empty store). */
uint64_t eddy_store_last_position(const eddy_store *st);
/* The current version of 'stream' (-1 when it has no events), as committed plus what the
 * open group added. */
int eddy_store_stream_version(eddy_store *st, const char *stream, int64_t *version, eddy_err *err);
/* The position of the event with 'id' (committed), EDDY_ENOTFOUND if none. */
int eddy_store_find_id(eddy_store *st, const char *id, uint64_t *position, eddy_err *err);

typedef struct eddy_store_stats {
    uint64_t events; /* events stored */
    uint64_t last_position;
    uint64_t streams;     /* distinct streams, $deadletter included */
    uint64_t deadletters; /* events in $deadletter */
    uint64_t checkpoints; /* subscription checkpoints stored */
    uint64_t file_bytes;  /* size of events.mdb */
    uint64_t map_bytes;   /* the map size (largest the file may grow to) */
    int64_t first_ingest; /* ingest time of the first event; 0 if none */
    int64_t last_ingest;  /* ingest time of the last event; 0 if none */
    int format;           /* record format of the file */
    /* counters of this process */
    uint64_t commits, syncs, appended, existing, deadlettered, refused;
} eddy_store_stats;
int eddy_store_get_stats(eddy_store *st, eddy_store_stats *out, eddy_err *err);

/* Reports progress: 'done' of 'total' records checked. */
typedef void (*eddy_store_progress_fn)(uint64_t done, uint64_t total, void *data);
/* Reads every record and checks it against the three indexes (and their sizes against the
 * log): positions without gaps, each id, stream version and event time indexed to its
 * position. EDDY_OK, or EDDY_EIO naming the first problem. A fault inside LMDB on a damaged
 * B-tree page is not caught here: run it in a child process (`eddy events check` does).
 * 'progress' may be NULL. */
int eddy_store_verify(eddy_store *st, eddy_store_progress_fn progress, void *data, eddy_err *err);

/* ---- checkpoints (subscriptions) ---- */

typedef struct eddy_store_checkpoint {
    uint64_t position; /* last position handed on */
    int64_t version;   /* for a stream subscription, the version of that event; else -1 */
} eddy_store_checkpoint;

/* Reads checkpoint 'name' (committed or in the open group). EDDY_ENOTFOUND if none. */
int eddy_store_checkpoint_get(eddy_store *st, const char *name, eddy_store_checkpoint *cp,
                              eddy_err *err);
/* Writes checkpoint 'name' into the open group (one is started if needed); it is durable
 * with the group's commit. */
int eddy_store_checkpoint_set(eddy_store *st, const char *name, const eddy_store_checkpoint *cp,
                              eddy_err *err);

/* ---- node state: small records node types keep beside the log ----
 *
 * A node type whose state must survive a restart (window's half-built windows, alert's
 * active alerts) keeps it as records named by an 'owner' (the node id, 1..
 * EDDY_STORE_NAME_MAX bytes) and a 'key' (0..EDDY_STORE_STATE_KEY_MAX bytes, any bytes
 * but NUL). A write joins the open group like an append (one is started if none) and is
 * durable with that group's commit, so state and the events appended in the same loop
 * iteration commit together or not at all, and acknowledgements that wait for the commit
 * (eddy_store_when_committed, the loop's flush hooks) follow the state too. When a group is
 * lost (EDDY_EIO) its state writes are lost with it. */

#define EDDY_STORE_STATE_KEY_MAX 240 /* bytes of a node state key */

/* Writes record ('owner', 'key') = 'value' ('len' bytes, at most the store's max_body; the
 * nodes use JSON text), replacing what was there. EDDY_EINVAL for a bad owner or key, a
 * value too long or a read-only store; EDDY_EIO (the open group is lost).
 * Ownership: all borrowed for the call. */
int eddy_store_state_put(eddy_store *st, const char *owner, const char *key, size_t key_len,
                         const void *value, size_t len, eddy_err *err);
/* Deletes record ('owner', 'key'); EDDY_OK when there was none. Errors as _put. */
int eddy_store_state_del(eddy_store *st, const char *owner, const char *key, size_t key_len,
                         eddy_err *err);
/* Deletes every record of 'owner' (a node removed from the flow). Errors as _put. */
int eddy_store_state_clear(eddy_store *st, const char *owner, eddy_err *err);

/* Called for each record of an owner, in key order. 'key' and 'value' are borrowed from
 * the store's map for the call only (copy what you keep); 'key' is not NUL-terminated.
 * Return 0 to go on, anything else to stop the scan (it becomes the scan's result). */
typedef int (*eddy_store_state_fn)(const char *key, size_t key_len, const void *value, size_t len,
                                   void *data);
/* Before-commit hooks: 'fn' runs at the start of every commit of a group, inside it. A
 * node whose state changes with every event (window) marks it changed and writes it once
 * per group there, instead of once per event; it calls eddy_store_open_group when it marks
 * the first change, so that the next commit point commits even if nothing is appended.
 * A hook may write node state (eddy_store_state_put/del) and nothing else. */
typedef void (*eddy_store_hook_fn)(eddy_store *st, void *data);
int eddy_store_add_before_commit(eddy_store *st, eddy_store_hook_fn fn, void *data, eddy_err *err);
void eddy_store_remove_before_commit(eddy_store *st, eddy_store_hook_fn fn, void *data);
/* Opens the group if none is open. EDDY_EINVAL (read-only store), EDDY_EIO. */
int eddy_store_open_group(eddy_store *st, eddy_err *err);

/* Calls 'fn' once with record ('owner', 'key'), as committed plus what the open group
 * wrote (borrowed as above). Returns what 'fn' returned, EDDY_ENOTFOUND when there is no
 * such record, EDDY_EINVAL, EDDY_EIO. 'fn' must not write to the store. */
int eddy_store_state_get(eddy_store *st, const char *owner, const char *key, size_t key_len,
                         eddy_store_state_fn fn, void *data, eddy_err *err);
/* Calls 'fn' for every record of 'owner', as committed plus what the open group wrote.
 * Returns EDDY_OK, what 'fn' returned when it stopped, EDDY_EINVAL, EDDY_EIO. 'fn' must
 * not write to the store. */
int eddy_store_state_scan(eddy_store *st, const char *owner, eddy_store_state_fn fn, void *data,
                          eddy_err *err);

/* ---- times ---- */

/* Parses an event time: integer milliseconds since the epoch ("1704067200000"), or an
 * RFC 3339 / ISO 8601 date-time ("2024-01-01T00:00:00.250Z", "...+02:00"; a date alone is
 * midnight; without a zone it is UTC, where JavaScript would take local time). EDDY_EINVAL
 * if it is neither. */
int eddy_store_parse_time(const char *text, int64_t *ms);
/* Writes 'ms' as "2024-01-01T00:00:00.250Z" into 'buf' (32 bytes). Returns 'buf'. */
char *eddy_store_format_time(int64_t ms, char *buf);

/* ---- NDJSON (export and import) ---- */

/* One line {"position":..,"stream":..,"version":..,"type":..,"id":..,"time":..,
 * "ingestTime":..,"data":<the stored JSON text, verbatim>} plus '\n'. Times are ms since
 * the epoch. Ownership: new, eddy_free; '*len' gets the length. NULL on out-of-memory. */
char *eddy_store_record_ndjson(const eddy_store_record *rec, size_t *len);

typedef struct eddy_store_import_result {
    uint64_t position; /* where the line's event is now */
    bool existing;     /* it was stored already (same id, same place): nothing written */
    bool renumbered;   /* its position differs from the line's */
} eddy_store_import_result;

/* Appends the event of one NDJSON line (as eddy_store_record_ndjson writes it) with its
 * stream, version (expected = version - 1), type, id, times and the exact bytes of 'data'.
 * Lines for $deadletter are accepted. EDDY_EPARSE for a malformed line (naming the
 * field), EDDY_ECONFLICT when the stream is not at version - 1, EDDY_EDUPLICATE when the id
 * is stored elsewhere, EDDY_EIO. */
int eddy_store_import_line(eddy_store *st, const char *line, size_t len,
                           eddy_store_import_result *out, eddy_err *err);

#endif
