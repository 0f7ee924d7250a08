/* event_msg.c: helpers shared by the event nodes (see event_msg.h). */
#include "event_msg.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "msg.h"

json_t *event_msg_from_record(const eddy_store_record *rec, eddy_err *err)
{
    json_t *payload = eddy_store_record_json(rec, err);
    if (!payload)
        return NULL;
    json_t *msg = eddy_msg_new();
    if (!msg) {
        json_decref(payload);
        eddy_err_set(err, EDDY_ENOMEM, "out of memory making an event message");
        return NULL;
    }
    /* Keys are literals and the names were checked as UTF-8 when stored: no checks. */
    json_object_set_new_nocheck(msg, "topic", json_string_nocheck(rec->stream));
    json_object_set_new_nocheck(msg, "payload", payload);
    json_object_set_new_nocheck(msg, "position", json_integer((json_int_t)rec->position));
    json_object_set_new_nocheck(msg, "version", json_integer(rec->version));
    json_object_set_new_nocheck(msg, "eventType", json_string_nocheck(rec->type));
    json_object_set_new_nocheck(msg, "eventId", json_string_nocheck(rec->id));
    json_object_set_new_nocheck(msg, "eventTime", json_integer(rec->time));
    json_object_set_new_nocheck(msg, "ingestTime", json_integer(rec->ingest_time));
    return msg;
}

const char *event_msg_path(const char *prop)
{
    return strncmp(prop, "msg.", 4) == 0 ? prop + 4 : prop;
}

bool event_msg_time(const json_t *value, int64_t *ms)
{
    if (json_is_number(value)) {
        double v = json_number_value(value);
        if (!isfinite(v) || fabs(v) > 9.0e15)
            return false;
        *ms = (int64_t)llround(v);
        return true;
    }
    if (json_is_string(value))
        return eddy_store_parse_time(json_string_value(value), ms) == EDDY_OK;
    return false;
}

bool event_msg_expected(const json_t *value, int64_t *expected)
{
    double v;
    if (json_is_string(value)) {
        const char *s = json_string_value(value);
        if (strcmp(s, "any") == 0) {
            *expected = EDDY_STORE_ANY;
            return true;
        }
        if (strcmp(s, "no_stream") == 0 || strcmp(s, "noStream") == 0) {
            *expected = EDDY_STORE_NO_STREAM;
            return true;
        }
        if (strcmp(s, "stream_exists") == 0 || strcmp(s, "streamExists") == 0) {
            *expected = EDDY_STORE_STREAM_EXISTS;
            return true;
        }
        if (!eddy_parse_number(s, &v))
            return false;
    } else if (json_is_number(value)) {
        v = json_number_value(value);
    } else {
        return false;
    }
    if (v != floor(v) || v > 9.0e15 ||
        (v < 0 && v != EDDY_STORE_ANY && v != EDDY_STORE_NO_STREAM &&
         v != EDDY_STORE_STREAM_EXISTS))
        return false;
    *expected = (int64_t)v;
    return true;
}

bool event_msg_position(const json_t *value, uint64_t *pos)
{
    double v;
    if (json_is_number(value))
        v = json_number_value(value);
    else if (!json_is_string(value) || !eddy_parse_number(json_string_value(value), &v))
        return false;
    if (v < 0 || v != floor(v) || v > 9.0e15)
        return false;
    *pos = (uint64_t)v;
    return true;
}
