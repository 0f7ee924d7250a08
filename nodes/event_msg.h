/* event_msg.h: what the event nodes (event-store, event-replay, event-subscribe) share,
 * private to them and to the IoT nodes (window and alert read event times with it): the
 * message made from a stored event, status texts, and reading positions, times and
 * expected versions from message properties. */
#ifndef EDDY_EVENT_MSG_H
#define EDDY_EVENT_MSG_H

#include <jansson.h>
#include <stdbool.h>
#include <stdint.h>

#include "err.h"
#include "store.h"

/* A message for a stored event: {_msgid, topic: the stream, payload: the body,
 * position, version, eventType, eventId, eventTime, ingestTime} (times in ms since the
 * epoch). EDDY_EIO in 'err' when the body does not parse (a damaged record). Ownership:
 * new. */
json_t *event_msg_from_record(const eddy_store_record *rec, eddy_err *err);

/* A property name as the editor writes it ("msg.payload.id" or "payload.id") without the
 * "msg." prefix. Borrowed from 'prop'. */
const char *event_msg_path(const char *prop);

/* An event time from a message value: a number of ms since the epoch or a date-time text
 * (eddy_store_parse_time). False if it is neither. */
bool event_msg_time(const json_t *value, int64_t *ms);

/* An expected version from a message value: a number >= 0 (exact), -1 or "no_stream"
 * ("noStream"), -2 or "any", -4 or "stream_exists" ("streamExists"), or such a number as
 * text. False if it is none of these. */
bool event_msg_expected(const json_t *value, int64_t *expected);

/* A position from a value: a whole number >= 0 (or such a text). */
bool event_msg_position(const json_t *value, uint64_t *pos);

#endif
