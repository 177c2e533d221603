/*  nx_proto - the Nexus wire protocol: envelope, message types, codec.
 *
 *  Every Nexus message is one msgpack frame after the ZeroMQ routing frames:
 *  a map {v, type, id, from, to, corr, body}. The body is a flat map whose
 *  keys and value kinds are fixed per message type (see PROTOCOL.md, which
 *  is the specification; this header and nx_proto.c implement it).
 *
 *  Invariants:
 *  - nx_msg_decode() never reads past `len`, never asserts on input, and
 *    rejects anything malformed with an error string that names the field
 *    and the cause.
 *  - A decoded nx_msg_t owns copies of all its strings and byte fields;
 *    nothing points into the caller's buffer.
 *  - String fields are valid UTF-8 without NUL bytes, so they can be used as
 *    C strings; byte fields (kind BIN) may hold anything.
 *
 *  The error table (nx_strerror) lives here because proto is the lowest
 *  module: every other module links it. */
#ifndef NX_PROTO_H
#define NX_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define NX_PROTO_VERSION 1
#define NX_PROTO_MAX_FRAME (16u << 20) /* bytes in one msgpack frame */
#define NX_PROTO_MAX_NAME 64           /* from, to, names, departments */
#define NX_PROTO_MAX_STR (4u << 20)    /* any one string or byte field */

/* Nexus error codes: negative, below every errno. nx_strerror() also
 * accepts negative errno values. */
#define NX_ERRNO_MAP(X)                                        \
    X(BADMSG, -1001, "malformed message")                      \
    X(VERSION, -1002, "unsupported protocol version")          \
    X(UNKTYPE, -1003, "unknown message type")                  \
    X(TOOBIG, -1004, "message too large")                      \
    X(NOTFOUND, -1005, "not found")                            \
    X(CONFIG, -1006, "invalid company file")                   \
    X(STORE, -1007, "ledger error")                            \
    X(TIMEOUT, -1008, "timed out")                             \
    X(UNREACH, -1009, "CEO unreachable")                       \
    X(STATE, -1010, "operation not allowed in this state")     \
    X(USAGE, -1011, "invalid usage")                           \
    X(REMOTE, -1012, "the CEO answered with an error")

#define NX_ERRNO_ENUM(name, val, text) NX_E##name = val,
enum { NX_ERRNO_MAP(NX_ERRNO_ENUM) };
#undef NX_ERRNO_ENUM

/* A static description of `err` (an NX_E* code or a negative errno). */
const char *nx_strerror(int err);

/* Makes s (a C string) valid UTF-8 in place: every byte that does not
 * start a valid character becomes '?'. String fields must be valid UTF-8;
 * text from an agent is made so before it is sent. */
void nx_utf8_sanitize(char *s);

/* Message types. The second column is the wire name. */
#define NX_MSG_TYPES(X)                   \
    X(ERROR, "error")                     \
    X(OK, "ok")                           \
    X(PING, "ping")                       \
    X(PONG, "pong")                       \
    X(HELLO, "hello")                     \
    X(NODE_HELLO, "node_hello")           \
    X(WELCOME, "welcome")                 \
    X(HEARTBEAT, "heartbeat")             \
    X(BYE, "bye")                         \
    X(STOP, "stop")                       \
    X(TASK, "task")                       \
    X(RESULT, "result")                   \
    X(SUBMIT, "submit")                   \
    X(SUBMITTED, "submitted")             \
    X(STATUS, "status")                   \
    X(WAIT, "wait")                       \
    X(TASKS, "tasks")                     \
    X(TASK_INFO, "task_info")             \
    X(PS, "ps")                           \
    X(EMPLOYEE_INFO, "employee_info")     \
    X(END, "end")                         \
    X(SHUTDOWN, "shutdown")               \
    X(EVENTS, "events")                   \
    X(CANCEL, "cancel")                   \
    X(RETRY, "retry")                     \
    X(RUNNING, "running")                 \
    X(SUPERVISOR, "supervisor")           \
    X(STATS, "stats")                     \
    X(STATS_INFO, "stats_info")           \
    X(EVENT, "event")                     \
    X(PROGRESS, "progress")               \
    X(TREE, "tree")                       \
    X(CHAT, "chat")

#define NX_MSG_ENUM(name, wire) NX_MSG_##name,
typedef enum { NX_MSG_TYPES(NX_MSG_ENUM) NX_MSG__COUNT } nx_msg_type_t;
#undef NX_MSG_ENUM

/* The kind of a body value. INT accepts any integer in int64 range, UINT
 * only non-negative ones; BIN accepts msgpack bin or str. */
typedef enum { NX_V_STR, NX_V_BIN, NX_V_INT, NX_V_UINT, NX_V_BOOL } nx_val_kind_t;

typedef struct nx_msg nx_msg_t;

/* The wire name of a type ("submit"), or "?" when out of range. */
const char *nx_msg_type_name(nx_msg_type_t type);

/* Looks up a wire name; returns 0 and sets *ret_type, or NX_EUNKTYPE. */
int nx_msg_type_from_name(const char *name, nx_msg_type_t *ret_type);

/* An empty message of `type` with id, corr = 0 and empty from/to.
 * NULL only on OOM. */
nx_msg_t *nx_msg_new(nx_msg_type_t type);

/* Frees the message; sets *self_p to NULL. Accepts NULL. */
void nx_msg_destroy(nx_msg_t **self_p);

nx_msg_type_t nx_msg_type(const nx_msg_t *self);
uint64_t nx_msg_id(const nx_msg_t *self);
uint64_t nx_msg_corr(const nx_msg_t *self);
const char *nx_msg_from(const nx_msg_t *self);
const char *nx_msg_to(const nx_msg_t *self);
void nx_msg_set_id(nx_msg_t *self, uint64_t id);
void nx_msg_set_corr(nx_msg_t *self, uint64_t corr);
/* Names are cut to NX_PROTO_MAX_NAME bytes. */
void nx_msg_set_from(nx_msg_t *self, const char *from);
void nx_msg_set_to(nx_msg_t *self, const char *to);

/* Setters copy their value. `key` must be a field of the message's type
 * with the matching kind (API misuse is asserted). Setting a key twice
 * replaces the value. Return 0, or -ENOMEM. */
int nx_msg_set_str(nx_msg_t *self, const char *key, const char *value);
int nx_msg_set_bin(nx_msg_t *self, const char *key, const void *data, size_t len);
int nx_msg_set_int(nx_msg_t *self, const char *key, int64_t value);
int nx_msg_set_uint(nx_msg_t *self, const char *key, uint64_t value);
int nx_msg_set_bool(nx_msg_t *self, const char *key, bool value);

/* Getters. A missing field yields NULL / `dflt`. Pointers stay valid until
 * the message is destroyed or the field is set again. */
bool nx_msg_has(const nx_msg_t *self, const char *key);
const char *nx_msg_str(const nx_msg_t *self, const char *key);
const void *nx_msg_bin(const nx_msg_t *self, const char *key, size_t *ret_len);
int64_t nx_msg_int(const nx_msg_t *self, const char *key, int64_t dflt);
uint64_t nx_msg_uint(const nx_msg_t *self, const char *key, uint64_t dflt);
bool nx_msg_bool(const nx_msg_t *self, const char *key, bool dflt);

/* Encodes into a malloc'd buffer the caller frees. Fails with NX_EBADMSG
 * when a required field is missing (a programming error worth reporting,
 * not asserting), NX_ETOOBIG past NX_PROTO_MAX_FRAME, or -ENOMEM. */
int nx_msg_encode(const nx_msg_t *self, void **ret_buf, size_t *ret_len);

/* Decodes one frame. On success returns 0 and *ret_msg is the caller's.
 * On failure returns NX_EBADMSG, NX_EVERSION, NX_EUNKTYPE or NX_ETOOBIG,
 * writes a one-line reason naming the field into `err` (if not NULL) and
 * leaves *ret_msg untouched. For NX_EUNKTYPE/NX_EVERSION the envelope's
 * id is still written to *ret_id (if not NULL) so the sender can be told. */
int nx_msg_decode(const void *buf, size_t len, nx_msg_t **ret_msg, uint64_t *ret_id,
                  char *err, size_t errlen);

/* Builds an ERROR reply to `request` (corr = its id) with a code word such
 * as "not_found" and a human message. NULL only on OOM. */
nx_msg_t *nx_msg_error_reply(const nx_msg_t *request, const char *code, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

#endif
