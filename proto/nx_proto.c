/*  nx_proto.c - message catalogue and msgpack codec.
 *
 *  Decoding runs in two passes. nx_mp_scan() walks the raw bytes first and
 *  proves that the frame is one complete msgpack value, nested at most
 *  NX_MAX_DEPTH deep, whose containers cannot claim more elements than
 *  there are bytes left. Only then does msgpack-c unpack it, so a 5-byte
 *  frame claiming a 4-billion-element array cannot make msgpack-c allocate
 *  gigabytes. The second pass checks the envelope and the body against the
 *  field table of the message type and copies the values out. */
#define _GNU_SOURCE
#include "nx_proto.h"

#include <assert.h>
#include <errno.h>
#include <msgpack.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define NX_MAX_DEPTH 8
#define NX_MAX_FIELDS 40

typedef struct {
    const char *key;
    nx_val_kind_t kind;
    bool required;
} nx_field_spec_t;

typedef struct {
    const char *name;
    const nx_field_spec_t *fields; /* NULL-key terminated */
} nx_type_spec_t;

#define F(k, kind, req) {k, NX_V_##kind, req}
#define END {NULL, 0, false}
static const nx_field_spec_t f_error[] = {F("code", STR, true), F("message", STR, true),
                                          F("type", STR, false), END};
static const nx_field_spec_t f_none[] = {END};
static const nx_field_spec_t f_hello[] = {F("name", STR, true), F("dept", STR, true),
                                          F("capacity", UINT, true), F("free", UINT, false),
                                          F("pid", UINT, false), F("node", STR, false),
                                          F("received", UINT, false), END};
/* Credit state an employee reports with heartbeats and results. */
static const nx_field_spec_t f_heartbeat[] = {F("free", UINT, false), F("received", UINT, false),
                                              END};
static const nx_field_spec_t f_node_hello[] = {F("name", STR, true), F("pid", UINT, false), END};
static const nx_field_spec_t f_welcome[] = {F("heartbeat_ms", UINT, true),
                                            F("liveness", UINT, true), END};
static const nx_field_spec_t f_reason[] = {F("reason", STR, false), END};
static const nx_field_spec_t f_task[] = {F("task", UINT, true), F("attempt", UINT, true),
                                         F("dept", STR, true), F("input", BIN, true),
                                         F("priority", INT, false),
                                         F("soft_timeout_ms", UINT, false),
                                         F("hard_timeout_ms", UINT, false),
                                         F("workspace", STR, false), END};
static const nx_field_spec_t f_result[] = {
    F("task", UINT, true),     F("attempt", UINT, true), F("ok", BOOL, true),
    F("exit_code", INT, false), F("signal", INT, false), F("output", BIN, false),
    F("error", STR, false),    F("duration_ms", UINT, false), F("free", UINT, false),
    F("received", UINT, false), F("tokens_in", UINT, false), F("tokens_out", UINT, false),
    F("cost_microusd", UINT, false), F("verdict", STR, false), F("subtasks", STR, false),
    F("session", STR, false), END};
/* Agents talking: kind is send, ask, answer, publish (employee -> CEO),
 * msg, question, reply, ok, error (CEO -> employee). */
static const nx_field_spec_t f_chat[] = {F("kind", STR, true), F("ref", STR, false),
                                         F("to", STR, false),  F("text", STR, false),
                                         F("task", UINT, false), F("qid", UINT, false),
                                         F("sender", STR, false), END};
static const nx_field_spec_t f_progress[] = {F("task", UINT, true), F("attempt", UINT, true),
                                             F("text", STR, true), END};
static const nx_field_spec_t f_submit[] = {F("dept", STR, false), F("input", BIN, true),
                                           F("workflow", STR, false),
                                           F("priority", INT, false),
                                           F("idem_key", STR, false),
                                           F("max_attempts", UINT, false),
                                           F("soft_timeout_ms", UINT, false),
                                           F("hard_timeout_ms", UINT, false), END};
static const nx_field_spec_t f_submitted[] = {F("task", UINT, true), F("existing", BOOL, false),
                                              END};
static const nx_field_spec_t f_status[] = {F("task", UINT, true), END};
static const nx_field_spec_t f_wait[] = {F("task", UINT, true), F("timeout_ms", UINT, false),
                                         END};
static const nx_field_spec_t f_tasks[] = {F("state", STR, false), F("dept", STR, false),
                                          F("after", UINT, false), F("limit", UINT, false),
                                          END};
static const nx_field_spec_t f_cancel[] = {F("task", UINT, true), F("attempt", UINT, false),
                                           END};
static const nx_field_spec_t f_running[] = {F("task", UINT, true), F("attempt", UINT, true),
                                            END};
static const nx_field_spec_t f_supervisor[] = {F("dept", STR, true), F("state", STR, true),
                                               F("detail", STR, false), END};
static const nx_field_spec_t f_stats_info[] = {
    F("messages", UINT, true),       F("commits", UINT, true),      F("submitted", UINT, true),
    F("succeeded", UINT, true),      F("failed", UINT, true),       F("requeued", UINT, true),
    F("stale_results", UINT, true),  F("events", UINT, true),        F("cancelled", UINT, true),
    F("queued", UINT, true),         F("delayed", UINT, true),      F("running", UINT, true),
    F("employees", UINT, true),      F("uptime_ms", UINT, true),    END};
static const nx_field_spec_t f_events[] = {F("topic", STR, false), F("limit", UINT, false),
                                           F("task", UINT, false), END};
static const nx_field_spec_t f_task_info[] = {
    F("task", UINT, true),        F("dept", STR, true),         F("state", STR, true),
    F("priority", INT, true),     F("attempts", UINT, true),    F("max_attempts", UINT, false),
    F("input", BIN, false),       F("output", BIN, false),      F("error", STR, false),
    F("employee", STR, false),    F("exit_code", INT, false),   F("created_ms", UINT, true),
    F("started_ms", UINT, false), F("finished_ms", UINT, false), F("idem_key", STR, false),
    F("run_after_ms", UINT, false), F("history", STR, false), F("parent", UINT, false),
    F("workflow", STR, false),    F("stage", UINT, false),      F("rejects", UINT, false),
    F("tokens_in", UINT, false),  F("tokens_out", UINT, false), F("cost_microusd", UINT, false),
    F("verdict", STR, false),     F("workspace", STR, false),   F("branch", STR, false),
    F("base", STR, false),        F("commits", STR, false),     F("depth", UINT, false), END};
static const nx_field_spec_t f_employee_info[] = {
    F("name", STR, true),     F("dept", STR, true),  F("state", STR, true),
    F("pid", UINT, false),    F("capacity", UINT, true), F("busy", UINT, true),
    F("done", UINT, true),    F("failed", UINT, true), F("current", UINT, false),
    F("node", STR, false),    F("note", STR, false), END};
static const nx_field_spec_t f_end[] = {F("count", UINT, true), END};
static const nx_field_spec_t f_event[] = {
    F("topic", STR, true),    F("seq", UINT, true),   F("ts_ms", UINT, true),
    F("task", UINT, false),   F("employee", STR, false), F("dept", STR, false),
    F("state", STR, false),   F("detail", STR, false), END};
#undef F
#undef END

static const nx_field_spec_t *const s_fields[NX_MSG__COUNT] = {
    [NX_MSG_ERROR] = f_error,         [NX_MSG_OK] = f_none,
    [NX_MSG_PING] = f_none,           [NX_MSG_PONG] = f_none,
    [NX_MSG_HELLO] = f_hello,         [NX_MSG_NODE_HELLO] = f_node_hello,
    [NX_MSG_WELCOME] = f_welcome,     [NX_MSG_HEARTBEAT] = f_heartbeat,
    [NX_MSG_BYE] = f_reason,          [NX_MSG_STOP] = f_reason,
    [NX_MSG_TASK] = f_task,           [NX_MSG_RESULT] = f_result,
    [NX_MSG_SUBMIT] = f_submit,       [NX_MSG_SUBMITTED] = f_submitted,
    [NX_MSG_STATUS] = f_status,       [NX_MSG_WAIT] = f_wait,
    [NX_MSG_TASKS] = f_tasks,         [NX_MSG_TASK_INFO] = f_task_info,
    [NX_MSG_PS] = f_none,             [NX_MSG_EMPLOYEE_INFO] = f_employee_info,
    [NX_MSG_END] = f_end,             [NX_MSG_SHUTDOWN] = f_none,
    [NX_MSG_EVENTS] = f_events,       [NX_MSG_EVENT] = f_event,
    [NX_MSG_CANCEL] = f_cancel,       [NX_MSG_RETRY] = f_status,
    [NX_MSG_RUNNING] = f_running,     [NX_MSG_SUPERVISOR] = f_supervisor,
    [NX_MSG_STATS] = f_none,          [NX_MSG_STATS_INFO] = f_stats_info,
    [NX_MSG_PROGRESS] = f_progress,   [NX_MSG_TREE] = f_status,
    [NX_MSG_CHAT] = f_chat,
};

#define NX_MSG_NAME(name, wire) [NX_MSG_##name] = wire,
static const char *const s_names[NX_MSG__COUNT] = {NX_MSG_TYPES(NX_MSG_NAME)};
#undef NX_MSG_NAME

typedef struct {
    const char *key;     /* points into the static field table */
    nx_val_kind_t kind;  /* the table's kind for key */
    union {
        int64_t i;
        uint64_t u;
        bool b;
    } num;               /* INT, UINT, BOOL */
    char *data;          /* STR, BIN: owned, NUL-terminated for convenience */
    size_t len;          /* STR, BIN: bytes in data, without the NUL */
} nx_field_t;

struct nx_msg {
    nx_msg_type_t type;                 /* one of NX_MSG_* */
    uint64_t id;                        /* sender-chosen message id */
    uint64_t corr;                      /* id of the message this answers, 0 if none */
    char from[NX_PROTO_MAX_NAME + 1];   /* sender name, may be empty */
    char to[NX_PROTO_MAX_NAME + 1];     /* recipient name, may be empty */
    nx_field_t fields[NX_MAX_FIELDS];   /* body, at most one entry per key */
    size_t nfields;                     /* used entries in fields */
};

const char *nx_strerror(int err) {
#define NX_STRERROR_CASE(name, val, text) \
    case val:                             \
        return text;
    switch (err) { NX_ERRNO_MAP(NX_STRERROR_CASE) }
#undef NX_STRERROR_CASE
    if (err < 0 && err > -4096)
        return strerror(-err);
    return "unknown error";
}

const char *nx_msg_type_name(nx_msg_type_t type) {
    return (unsigned)type < NX_MSG__COUNT ? s_names[type] : "?";
}

int nx_msg_type_from_name(const char *name, nx_msg_type_t *ret_type) {
    for (int i = 0; i < NX_MSG__COUNT; i++)
        if (strcmp(s_names[i], name) == 0) {
            *ret_type = (nx_msg_type_t)i;
            return 0;
        }
    return NX_EUNKTYPE;
}

nx_msg_t *nx_msg_new(nx_msg_type_t type) {
    assert((unsigned)type < NX_MSG__COUNT);
    nx_msg_t *self = calloc(1, sizeof *self);
    if (self)
        self->type = type;
    return self;
}

void nx_msg_destroy(nx_msg_t **self_p) {
    if (!self_p || !*self_p)
        return;
    nx_msg_t *self = *self_p;
    for (size_t i = 0; i < self->nfields; i++)
        free(self->fields[i].data);
    free(self);
    *self_p = NULL;
}

nx_msg_type_t nx_msg_type(const nx_msg_t *self) { return self->type; }
uint64_t nx_msg_id(const nx_msg_t *self) { return self->id; }
uint64_t nx_msg_corr(const nx_msg_t *self) { return self->corr; }
const char *nx_msg_from(const nx_msg_t *self) { return self->from; }
const char *nx_msg_to(const nx_msg_t *self) { return self->to; }
void nx_msg_set_id(nx_msg_t *self, uint64_t id) { self->id = id; }
void nx_msg_set_corr(nx_msg_t *self, uint64_t corr) { self->corr = corr; }
void nx_msg_set_from(nx_msg_t *self, const char *from) {
    snprintf(self->from, sizeof self->from, "%s", from ? from : "");
}
void nx_msg_set_to(nx_msg_t *self, const char *to) {
    snprintf(self->to, sizeof self->to, "%s", to ? to : "");
}

static const nx_field_spec_t *spec_find(nx_msg_type_t type, const char *key, size_t keylen) {
    for (const nx_field_spec_t *f = s_fields[type]; f->key; f++)
        if (strlen(f->key) == keylen && memcmp(f->key, key, keylen) == 0)
            return f;
    return NULL;
}

static nx_field_t *field_find(const nx_msg_t *self, const char *key) {
    for (size_t i = 0; i < self->nfields; i++)
        if (strcmp(self->fields[i].key, key) == 0)
            return (nx_field_t *)&self->fields[i];
    return NULL;
}

/* Returns the slot for key (existing or new, emptied), asserting that the
 * key belongs to the type with the given kind. */
static nx_field_t *field_slot(nx_msg_t *self, const char *key, nx_val_kind_t kind) {
    const nx_field_spec_t *spec = spec_find(self->type, key, strlen(key));
    assert(spec && "key is not a field of this message type");
    assert((spec->kind == kind || (spec->kind == NX_V_BIN && kind == NX_V_STR)) &&
           "value kind does not match the field");
    nx_field_t *f = field_find(self, key);
    if (!f) {
        assert(self->nfields < NX_MAX_FIELDS);
        f = &self->fields[self->nfields++];
    }
    free(f->data);
    memset(f, 0, sizeof *f);
    f->key = spec->key;
    f->kind = spec->kind;
    return f;
}

int nx_msg_set_bin(nx_msg_t *self, const char *key, const void *data, size_t len) {
    char *copy = malloc(len + 1);
    if (!copy)
        return -ENOMEM;
    if (len)
        memcpy(copy, data, len);
    copy[len] = '\0';
    nx_field_t *f = field_slot(self, key, NX_V_BIN);
    f->data = copy;
    f->len = len;
    return 0;
}

int nx_msg_set_str(nx_msg_t *self, const char *key, const char *value) {
    const nx_field_spec_t *spec = spec_find(self->type, key, strlen(key));
    assert(spec);
    size_t len = strlen(value);
    char *copy = strdup(value);
    if (!copy)
        return -ENOMEM;
    nx_field_t *f = field_slot(self, key, spec->kind == NX_V_BIN ? NX_V_BIN : NX_V_STR);
    f->data = copy;
    f->len = len;
    return 0;
}

int nx_msg_set_int(nx_msg_t *self, const char *key, int64_t value) {
    field_slot(self, key, NX_V_INT)->num.i = value;
    return 0;
}

int nx_msg_set_uint(nx_msg_t *self, const char *key, uint64_t value) {
    field_slot(self, key, NX_V_UINT)->num.u = value;
    return 0;
}

int nx_msg_set_bool(nx_msg_t *self, const char *key, bool value) {
    field_slot(self, key, NX_V_BOOL)->num.b = value;
    return 0;
}

bool nx_msg_has(const nx_msg_t *self, const char *key) { return field_find(self, key) != NULL; }

const char *nx_msg_str(const nx_msg_t *self, const char *key) {
    nx_field_t *f = field_find(self, key);
    return f && (f->kind == NX_V_STR || f->kind == NX_V_BIN) ? f->data : NULL;
}

const void *nx_msg_bin(const nx_msg_t *self, const char *key, size_t *ret_len) {
    nx_field_t *f = field_find(self, key);
    if (!f || (f->kind != NX_V_BIN && f->kind != NX_V_STR)) {
        if (ret_len)
            *ret_len = 0;
        return NULL;
    }
    if (ret_len)
        *ret_len = f->len;
    return f->data;
}

int64_t nx_msg_int(const nx_msg_t *self, const char *key, int64_t dflt) {
    nx_field_t *f = field_find(self, key);
    if (!f)
        return dflt;
    return f->kind == NX_V_UINT ? (int64_t)f->num.u : f->num.i;
}

uint64_t nx_msg_uint(const nx_msg_t *self, const char *key, uint64_t dflt) {
    nx_field_t *f = field_find(self, key);
    if (!f)
        return dflt;
    return f->kind == NX_V_INT ? (uint64_t)f->num.i : f->num.u;
}

bool nx_msg_bool(const nx_msg_t *self, const char *key, bool dflt) {
    nx_field_t *f = field_find(self, key);
    return f && f->kind == NX_V_BOOL ? f->num.b : dflt;
}

/* ---- encoding ---- */

static void pack_cstr(msgpack_packer *pk, const char *s, size_t len) {
    msgpack_pack_str(pk, len);
    msgpack_pack_str_body(pk, s, len);
}

int nx_msg_encode(const nx_msg_t *self, void **ret_buf, size_t *ret_len) {
    for (const nx_field_spec_t *f = s_fields[self->type]; f->key; f++)
        if (f->required && !field_find(self, f->key))
            return NX_EBADMSG;

    msgpack_sbuffer sbuf;
    msgpack_sbuffer_init(&sbuf);
    msgpack_packer pk;
    msgpack_packer_init(&pk, &sbuf, msgpack_sbuffer_write);

    msgpack_pack_map(&pk, 7);
    pack_cstr(&pk, "v", 1);
    msgpack_pack_uint32(&pk, NX_PROTO_VERSION);
    pack_cstr(&pk, "type", 4);
    pack_cstr(&pk, s_names[self->type], strlen(s_names[self->type]));
    pack_cstr(&pk, "id", 2);
    msgpack_pack_uint64(&pk, self->id);
    pack_cstr(&pk, "from", 4);
    pack_cstr(&pk, self->from, strlen(self->from));
    pack_cstr(&pk, "to", 2);
    pack_cstr(&pk, self->to, strlen(self->to));
    pack_cstr(&pk, "corr", 4);
    msgpack_pack_uint64(&pk, self->corr);
    pack_cstr(&pk, "body", 4);
    msgpack_pack_map(&pk, self->nfields);
    for (size_t i = 0; i < self->nfields; i++) {
        const nx_field_t *f = &self->fields[i];
        pack_cstr(&pk, f->key, strlen(f->key));
        switch (f->kind) {
        case NX_V_STR: pack_cstr(&pk, f->data, f->len); break;
        case NX_V_BIN:
            msgpack_pack_bin(&pk, f->len);
            msgpack_pack_bin_body(&pk, f->data, f->len);
            break;
        case NX_V_INT: msgpack_pack_int64(&pk, f->num.i); break;
        case NX_V_UINT: msgpack_pack_uint64(&pk, f->num.u); break;
        case NX_V_BOOL:
            if (f->num.b)
                msgpack_pack_true(&pk);
            else
                msgpack_pack_false(&pk);
            break;
        }
    }
    if (!sbuf.data) {
        msgpack_sbuffer_destroy(&sbuf);
        return -ENOMEM;
    }
    if (sbuf.size > NX_PROTO_MAX_FRAME) {
        msgpack_sbuffer_destroy(&sbuf);
        return NX_ETOOBIG;
    }
    *ret_len = sbuf.size;
    *ret_buf = msgpack_sbuffer_release(&sbuf);
    return 0;
}

/* ---- decoding ---- */

/* Big-endian reads of n bytes; the caller has checked the bounds. */
static uint64_t be_read(const uint8_t *p, size_t n) {
    uint64_t v = 0;
    for (size_t i = 0; i < n; i++)
        v = (v << 8) | p[i];
    return v;
}

/* Walks one msgpack value starting at *pos. Returns 0 and advances *pos,
 * or -1 when the value is truncated, too deep, uses a reserved byte, or a
 * container claims more elements than bytes remain. */
static int nx_mp_scan(const uint8_t *buf, size_t len, size_t *pos, int depth) {
    if (depth > NX_MAX_DEPTH || *pos >= len)
        return -1;
    uint8_t b = buf[(*pos)++];
    size_t rem = len - *pos;
    uint64_t n = 0;      /* payload bytes to skip */
    uint64_t items = 0;  /* child values to scan */
#define NEED(k)          \
    do {                 \
        if (rem < (k))   \
            return -1;   \
    } while (0)
    if (b <= 0x7f || b >= 0xe0 || b == 0xc0 || b == 0xc2 || b == 0xc3)
        return 0;
    if ((b & 0xe0) == 0xa0)
        n = b & 0x1f;
    else if ((b & 0xf0) == 0x90)
        items = b & 0x0f;
    else if ((b & 0xf0) == 0x80)
        items = 2u * (b & 0x0f);
    else {
        size_t lenbytes = 0;
        switch (b) {
        case 0xc4: case 0xd9: lenbytes = 1; break;  /* bin8, str8 */
        case 0xc5: case 0xda: lenbytes = 2; break;  /* bin16, str16 */
        case 0xc6: case 0xdb: lenbytes = 4; break;  /* bin32, str32 */
        case 0xc7: NEED(2); n = buf[*pos]; *pos += 2; rem -= 2; break;
        case 0xc8: NEED(3); n = be_read(buf + *pos, 2); *pos += 3; rem -= 3; break;
        case 0xc9: NEED(5); n = be_read(buf + *pos, 4); *pos += 5; rem -= 5; break;
        case 0xca: n = 4; break;
        case 0xcb: n = 8; break;
        case 0xcc: case 0xd0: n = 1; break;
        case 0xcd: case 0xd1: n = 2; break;
        case 0xce: case 0xd2: n = 4; break;
        case 0xcf: case 0xd3: n = 8; break;
        case 0xd4: n = 2; break;
        case 0xd5: n = 3; break;
        case 0xd6: n = 5; break;
        case 0xd7: n = 9; break;
        case 0xd8: n = 17; break;
        case 0xdc: NEED(2); items = be_read(buf + *pos, 2); *pos += 2; rem -= 2; break;
        case 0xdd: NEED(4); items = be_read(buf + *pos, 4); *pos += 4; rem -= 4; break;
        case 0xde: NEED(2); items = 2 * be_read(buf + *pos, 2); *pos += 2; rem -= 2; break;
        case 0xdf: NEED(4); items = 2 * be_read(buf + *pos, 4); *pos += 4; rem -= 4; break;
        default: return -1; /* 0xc1 is never used */
        }
        if (lenbytes) {
            NEED(lenbytes);
            n = be_read(buf + *pos, lenbytes);
            *pos += lenbytes;
            rem -= lenbytes;
        }
    }
    if (n) {
        NEED(n);
        *pos += n;
        return 0;
    }
    if (items > rem)
        return -1;
    for (uint64_t i = 0; i < items; i++)
        if (nx_mp_scan(buf, len, pos, depth + 1) < 0)
            return -1;
    return 0;
#undef NEED
}

static bool key_is(const msgpack_object *k, const char *s) {
    size_t n = strlen(s);
    return k->type == MSGPACK_OBJECT_STR && k->via.str.size == n &&
           memcmp(k->via.str.ptr, s, n) == 0;
}

/* The length of the valid UTF-8 character at p (no NUL, no overlong
 * form, no surrogate), or 0. */
static size_t utf8_char(const uint8_t *p, const uint8_t *end) {
    uint8_t c = *p;
    size_t n;
    uint32_t cp;
    if (c == 0)
        return 0;
    if (c < 0x80)
        return 1;
    if ((c & 0xe0) == 0xc0) {
        n = 1;
        cp = c & 0x1f;
    } else if ((c & 0xf0) == 0xe0) {
        n = 2;
        cp = c & 0x0f;
    } else if ((c & 0xf8) == 0xf0) {
        n = 3;
        cp = c & 0x07;
    } else
        return 0;
    if ((size_t)(end - p) <= n)
        return 0;
    for (size_t i = 1; i <= n; i++) {
        if ((p[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (p[i] & 0x3f);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000) ||
        cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff))
        return 0;
    return n + 1;
}

static bool utf8_ok(const char *s, size_t len) {
    const uint8_t *p = (const uint8_t *)s, *end = p + len;
    while (p < end) {
        size_t n = utf8_char(p, end);
        if (!n)
            return false;
        p += n;
    }
    return true;
}

void nx_utf8_sanitize(char *s) {
    uint8_t *p = (uint8_t *)s, *end = p + strlen(s);
    while (p < end) {
        size_t n = utf8_char(p, end);
        if (!n) {
            *p = '?';
            n = 1;
        }
        p += n;
    }
}

#define FAIL(code, ...)                              \
    do {                                             \
        if (err)                                     \
            snprintf(err, errlen, __VA_ARGS__);      \
        rc = (code);                                 \
        goto out;                                    \
    } while (0)

static int copy_name(char *dst, const msgpack_object *o, const char *what, char *err,
                     size_t errlen) {
    int rc = 0;
    if (o->type != MSGPACK_OBJECT_STR)
        FAIL(NX_EBADMSG, "envelope field '%s' must be a string", what);
    if (o->via.str.size > NX_PROTO_MAX_NAME)
        FAIL(NX_EBADMSG, "envelope field '%s' is longer than %d bytes", what, NX_PROTO_MAX_NAME);
    if (!utf8_ok(o->via.str.ptr, o->via.str.size))
        FAIL(NX_EBADMSG, "envelope field '%s' is not valid UTF-8 text", what);
    memcpy(dst, o->via.str.ptr, o->via.str.size);
    dst[o->via.str.size] = '\0';
out:
    return rc;
}

static int decode_body(nx_msg_t *msg, const msgpack_object *body, char *err, size_t errlen) {
    int rc = 0;
    const char *tname = s_names[msg->type];
    if (body->type != MSGPACK_OBJECT_MAP)
        FAIL(NX_EBADMSG, "%s: 'body' must be a map", tname);
    for (uint32_t i = 0; i < body->via.map.size; i++) {
        const msgpack_object *k = &body->via.map.ptr[i].key;
        const msgpack_object *v = &body->via.map.ptr[i].val;
        if (k->type != MSGPACK_OBJECT_STR)
            FAIL(NX_EBADMSG, "%s: body key #%u is not a string", tname, i + 1);
        const nx_field_spec_t *spec = spec_find(msg->type, k->via.str.ptr, k->via.str.size);
        if (!spec)
            continue; /* unknown keys are ignored: newer minor versions may add fields */
        if (field_find(msg, spec->key))
            FAIL(NX_EBADMSG, "%s: field '%s' appears twice", tname, spec->key);
        if (v->type == MSGPACK_OBJECT_NIL && !spec->required)
            continue; /* nil means absent for optional fields */
        nx_field_t *f = &msg->fields[msg->nfields];
        f->key = spec->key;
        f->kind = spec->kind;
        switch (spec->kind) {
        case NX_V_STR:
        case NX_V_BIN: {
            const char *ptr;
            size_t len;
            if (v->type == MSGPACK_OBJECT_STR) {
                ptr = v->via.str.ptr;
                len = v->via.str.size;
            } else if (v->type == MSGPACK_OBJECT_BIN && spec->kind == NX_V_BIN) {
                ptr = v->via.bin.ptr;
                len = v->via.bin.size;
            } else
                FAIL(NX_EBADMSG, "%s: field '%s' must be %s", tname, spec->key,
                     spec->kind == NX_V_STR ? "a string" : "bytes or a string");
            if (len > NX_PROTO_MAX_STR)
                FAIL(NX_EBADMSG, "%s: field '%s' is longer than %u bytes", tname, spec->key,
                     NX_PROTO_MAX_STR);
            if (spec->kind == NX_V_STR && !utf8_ok(ptr, len))
                FAIL(NX_EBADMSG, "%s: field '%s' is not valid UTF-8 text", tname, spec->key);
            f->data = malloc(len + 1);
            if (!f->data)
                FAIL(-ENOMEM, "out of memory");
            if (len)
                memcpy(f->data, ptr, len);
            f->data[len] = '\0';
            f->len = len;
            break;
        }
        case NX_V_INT:
            if (v->type == MSGPACK_OBJECT_POSITIVE_INTEGER && v->via.u64 <= INT64_MAX)
                f->num.i = (int64_t)v->via.u64;
            else if (v->type == MSGPACK_OBJECT_NEGATIVE_INTEGER)
                f->num.i = v->via.i64;
            else
                FAIL(NX_EBADMSG, "%s: field '%s' must be an integer", tname, spec->key);
            break;
        case NX_V_UINT:
            if (v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
                FAIL(NX_EBADMSG, "%s: field '%s' must be a non-negative integer", tname,
                     spec->key);
            f->num.u = v->via.u64;
            break;
        case NX_V_BOOL:
            if (v->type != MSGPACK_OBJECT_BOOLEAN)
                FAIL(NX_EBADMSG, "%s: field '%s' must be true or false", tname, spec->key);
            f->num.b = v->via.boolean;
            break;
        }
        msg->nfields++;
    }
    for (const nx_field_spec_t *f = s_fields[msg->type]; f->key; f++)
        if (f->required && !field_find(msg, f->key))
            FAIL(NX_EBADMSG, "%s: required field '%s' is missing", tname, f->key);
out:
    return rc;
}

int nx_msg_decode(const void *buf, size_t len, nx_msg_t **ret_msg, uint64_t *ret_id, char *err,
                  size_t errlen) {
    int rc = 0;
    nx_msg_t *msg = NULL;
    msgpack_unpacked up;
    msgpack_unpacked_init(&up);

    if (len > NX_PROTO_MAX_FRAME)
        FAIL(NX_ETOOBIG, "frame of %zu bytes exceeds the limit of %u", len, NX_PROTO_MAX_FRAME);
    if (len == 0)
        FAIL(NX_EBADMSG, "empty frame");
    size_t pos = 0;
    if (nx_mp_scan(buf, len, &pos, 0) < 0)
        FAIL(NX_EBADMSG, "frame is not valid msgpack (truncated, too deep or corrupt)");
    if (pos != len)
        FAIL(NX_EBADMSG, "%zu trailing bytes after the message", len - pos);
    size_t off = 0;
    if (msgpack_unpack_next(&up, buf, len, &off) != MSGPACK_UNPACK_SUCCESS)
        FAIL(NX_EBADMSG, "frame is not valid msgpack");
    const msgpack_object *root = &up.data;
    if (root->type != MSGPACK_OBJECT_MAP)
        FAIL(NX_EBADMSG, "envelope must be a map");

    const msgpack_object *v = NULL, *type = NULL, *id = NULL, *from = NULL, *to = NULL,
                         *corr = NULL, *body = NULL;
    for (uint32_t i = 0; i < root->via.map.size; i++) {
        const msgpack_object *k = &root->via.map.ptr[i].key;
        const msgpack_object *val = &root->via.map.ptr[i].val;
        const msgpack_object **slot = key_is(k, "v")      ? &v
                                      : key_is(k, "type") ? &type
                                      : key_is(k, "id")   ? &id
                                      : key_is(k, "from") ? &from
                                      : key_is(k, "to")   ? &to
                                      : key_is(k, "corr") ? &corr
                                      : key_is(k, "body") ? &body
                                                          : NULL;
        if (!slot)
            continue;
        if (*slot)
            FAIL(NX_EBADMSG, "envelope key appears twice");
        *slot = val;
    }
    if (!id || id->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        FAIL(NX_EBADMSG, "envelope field 'id' is missing or not a non-negative integer");
    if (ret_id)
        *ret_id = id->via.u64;
    if (!v || v->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        FAIL(NX_EBADMSG, "envelope field 'v' is missing or not a non-negative integer");
    if (v->via.u64 != NX_PROTO_VERSION)
        FAIL(NX_EVERSION, "protocol version %llu is not supported (this peer speaks %d)",
             (unsigned long long)v->via.u64, NX_PROTO_VERSION);
    if (!type || type->type != MSGPACK_OBJECT_STR)
        FAIL(NX_EBADMSG, "envelope field 'type' is missing or not a string");
    nx_msg_type_t t = NX_MSG__COUNT;
    for (int i = 0; i < NX_MSG__COUNT; i++)
        if (key_is(type, s_names[i]))
            t = (nx_msg_type_t)i;
    if (t == NX_MSG__COUNT) {
        int n = type->via.str.size > 32 ? 32 : (int)type->via.str.size;
        char shown[33];
        memcpy(shown, type->via.str.ptr, n);
        shown[n] = '\0';
        for (int i = 0; i < n; i++)
            if ((unsigned char)shown[i] < 0x20 || (unsigned char)shown[i] >= 0x7f)
                shown[i] = '?';
        FAIL(NX_EUNKTYPE, "unknown message type '%s'", shown);
    }
    if (corr && corr->type != MSGPACK_OBJECT_POSITIVE_INTEGER)
        FAIL(NX_EBADMSG, "envelope field 'corr' must be a non-negative integer");
    if (!body)
        FAIL(NX_EBADMSG, "envelope field 'body' is missing");

    msg = nx_msg_new(t);
    if (!msg)
        FAIL(-ENOMEM, "out of memory");
    msg->id = id->via.u64;
    msg->corr = corr ? corr->via.u64 : 0;
    if (from && (rc = copy_name(msg->from, from, "from", err, errlen)) < 0)
        goto out;
    if (to && (rc = copy_name(msg->to, to, "to", err, errlen)) < 0)
        goto out;
    if ((rc = decode_body(msg, body, err, errlen)) < 0)
        goto out;
    *ret_msg = msg;
    msg = NULL;
out:
    nx_msg_destroy(&msg);
    msgpack_unpacked_destroy(&up);
    return rc;
}
#undef FAIL

nx_msg_t *nx_msg_error_reply(const nx_msg_t *request, const char *code, const char *fmt, ...) {
    nx_msg_t *reply = nx_msg_new(NX_MSG_ERROR);
    if (!reply)
        return NULL;
    char text[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(text, sizeof text, fmt, ap);
    va_end(ap);
    if (request) {
        nx_msg_set_corr(reply, nx_msg_id(request));
        nx_msg_set_str(reply, "type", nx_msg_type_name(nx_msg_type(request)));
    }
    if (nx_msg_set_str(reply, "code", code) < 0 || nx_msg_set_str(reply, "message", text) < 0)
        nx_msg_destroy(&reply);
    return reply;
}
