/* debug_encode.h: values for the editor's debug sidebar, encoded as Node-RED's editor
 * expects them (the "msg" text and its "format": "string[N]", "number", "boolean",
 * "null", "undefined", "Object", "array[N]", "buffer[N]"). Long strings, arrays and
 * buffers are cut at 'max_len' (Node-RED's debugMaxLength), inside objects too. A message
 * buffer is eddy's {"type":"Buffer","data":[bytes]}. */
#ifndef EDDY_DEBUG_ENCODE_H
#define EDDY_DEBUG_ENCODE_H

#include <jansson.h>
#include <stddef.h>

/* Sets "msg" and "format" on 'out' for 'value' (NULL = undefined). EDDY_OK or
 * EDDY_ENOMEM. */
int eddy_debug_encode(const json_t *value, size_t max_len, json_t *out);

#endif
