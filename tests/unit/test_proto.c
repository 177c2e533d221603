/*  test_proto - the codec: round trips, every kind of malformed frame, and
 *  a replay of the fuzz corpus with bounded random mutations. */
#define _GNU_SOURCE
#include <dirent.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>
#include <msgpack.h>

#include "nx_proto.h"

static nx_msg_t *sample(nx_msg_type_t type) {
    nx_msg_t *m = nx_msg_new(type);
    nx_msg_set_id(m, 42);
    nx_msg_set_corr(m, 7);
    nx_msg_set_from(m, "eng-1");
    nx_msg_set_to(m, "ceo");
    switch (type) {
    case NX_MSG_ERROR:
        nx_msg_set_str(m, "code", "bad_message");
        nx_msg_set_str(m, "message", "it was bad");
        break;
    case NX_MSG_HELLO:
        nx_msg_set_str(m, "name", "eng-1");
        nx_msg_set_str(m, "dept", "engineering");
        nx_msg_set_uint(m, "capacity", 2);
        nx_msg_set_uint(m, "free", 2);
        break;
    case NX_MSG_NODE_HELLO: nx_msg_set_str(m, "name", "host-a"); break;
    case NX_MSG_WELCOME:
        nx_msg_set_uint(m, "heartbeat_ms", 1000);
        nx_msg_set_uint(m, "liveness", 3);
        break;
    case NX_MSG_TASK:
        nx_msg_set_uint(m, "task", 9);
        nx_msg_set_uint(m, "attempt", 1);
        nx_msg_set_str(m, "dept", "qa");
        nx_msg_set_bin(m, "input", "\x00\x01\xff", 3);
        nx_msg_set_int(m, "priority", -5);
        break;
    case NX_MSG_RESULT:
        nx_msg_set_uint(m, "task", 9);
        nx_msg_set_uint(m, "attempt", 1);
        nx_msg_set_bool(m, "ok", true);
        nx_msg_set_bin(m, "output", "done", 4);
        break;
    case NX_MSG_SUBMIT:
        nx_msg_set_str(m, "dept", "qa");
        nx_msg_set_str(m, "input", "test it");
        nx_msg_set_str(m, "idem_key", "k1");
        break;
    case NX_MSG_SUBMITTED: nx_msg_set_uint(m, "task", 1); break;
    case NX_MSG_STATUS:
    case NX_MSG_WAIT: nx_msg_set_uint(m, "task", 1); break;
    case NX_MSG_TASK_INFO:
        nx_msg_set_uint(m, "task", 1);
        nx_msg_set_str(m, "dept", "qa");
        nx_msg_set_str(m, "state", "queued");
        nx_msg_set_int(m, "priority", 0);
        nx_msg_set_uint(m, "attempts", 0);
        nx_msg_set_uint(m, "created_ms", 1);
        break;
    case NX_MSG_EMPLOYEE_INFO:
        nx_msg_set_str(m, "name", "qa-1");
        nx_msg_set_str(m, "dept", "qa");
        nx_msg_set_str(m, "state", "idle");
        nx_msg_set_uint(m, "capacity", 1);
        nx_msg_set_uint(m, "busy", 0);
        nx_msg_set_uint(m, "done", 0);
        nx_msg_set_uint(m, "failed", 0);
        break;
    case NX_MSG_END: nx_msg_set_uint(m, "count", 3); break;
    case NX_MSG_CANCEL:
    case NX_MSG_RETRY: nx_msg_set_uint(m, "task", 4); break;
    case NX_MSG_RUNNING:
        nx_msg_set_uint(m, "task", 4);
        nx_msg_set_uint(m, "attempt", 2);
        break;
    case NX_MSG_SUPERVISOR:
        nx_msg_set_str(m, "dept", "qa");
        nx_msg_set_str(m, "state", "gave_up");
        break;
    case NX_MSG_STATS_INFO: {
        static const char *const keys[] = {"messages", "commits", "submitted", "succeeded",
                                           "failed", "cancelled", "requeued", "stale_results",
                                           "events", "queued", "delayed", "running",
                                           "employees", "uptime_ms"};
        for (size_t i = 0; i < sizeof keys / sizeof keys[0]; i++)
            nx_msg_set_uint(m, keys[i], i);
        break;
    }
    case NX_MSG_PROGRESS:
        nx_msg_set_uint(m, "task", 4);
        nx_msg_set_uint(m, "attempt", 1);
        nx_msg_set_str(m, "text", "tool Bash: ls");
        break;
    case NX_MSG_TREE: nx_msg_set_uint(m, "task", 4); break;
    case NX_MSG_CHAT:
        nx_msg_set_str(m, "kind", "ask");
        nx_msg_set_str(m, "ref", "r1");
        nx_msg_set_str(m, "to", "dept:qa");
        nx_msg_set_str(m, "text", "is it done?");
        nx_msg_set_uint(m, "task", 4);
        break;
    case NX_MSG_EVENT:
        nx_msg_set_str(m, "topic", "task.submitted");
        nx_msg_set_uint(m, "seq", 1);
        nx_msg_set_uint(m, "ts_ms", 2);
        break;
    default: break;
    }
    return m;
}

static void test_every_type_round_trips(void **state) {
    for (int t = 0; t < NX_MSG__COUNT; t++) {
        nx_msg_t *m = sample((nx_msg_type_t)t);
        void *buf;
        size_t len;
        assert_int_equal(nx_msg_encode(m, &buf, &len), 0);
        nx_msg_t *d = NULL;
        char err[256];
        assert_int_equal(nx_msg_decode(buf, len, &d, NULL, err, sizeof err), 0);
        assert_int_equal(nx_msg_type(d), t);
        assert_int_equal(nx_msg_id(d), 42);
        assert_int_equal(nx_msg_corr(d), 7);
        assert_string_equal(nx_msg_from(d), "eng-1");
        assert_string_equal(nx_msg_to(d), "ceo");
        free(buf);
        nx_msg_destroy(&d);
        nx_msg_destroy(&m);
        assert_null(m);
    }
}

static void test_body_values_survive(void **state) {
    nx_msg_t *m = sample(NX_MSG_TASK);
    void *buf;
    size_t len;
    assert_int_equal(nx_msg_encode(m, &buf, &len), 0);
    nx_msg_t *d = NULL;
    assert_int_equal(nx_msg_decode(buf, len, &d, NULL, NULL, 0), 0);
    size_t n;
    const char *in = nx_msg_bin(d, "input", &n);
    assert_int_equal(n, 3);
    assert_memory_equal(in, "\x00\x01\xff", 3);
    assert_int_equal(nx_msg_int(d, "priority", 0), -5);
    assert_int_equal(nx_msg_uint(d, "task", 0), 9);
    assert_string_equal(nx_msg_str(d, "dept"), "qa");
    free(buf);
    nx_msg_destroy(&d);
    nx_msg_destroy(&m);
}

static void test_missing_required_field_is_not_encoded(void **state) {
    nx_msg_t *m = nx_msg_new(NX_MSG_SUBMIT);
    nx_msg_set_str(m, "dept", "qa");
    void *buf;
    size_t len;
    assert_int_equal(nx_msg_encode(m, &buf, &len), NX_EBADMSG);
    nx_msg_destroy(&m);
}

/* Packs an envelope with the given overrides, for malformed cases. */
typedef struct {
    const char *type;
    int version;
    bool with_body;
    bool body_not_map;
    const char *body_key;   /* one body entry: key ... */
    int body_kind;          /* 0 str, 1 uint, 2 negative int, 3 bool */
} env_spec_t;

static void pack_env(const env_spec_t *s, msgpack_sbuffer *sb) {
    msgpack_packer pk;
    msgpack_sbuffer_init(sb);
    msgpack_packer_init(&pk, sb, msgpack_sbuffer_write);
    msgpack_pack_map(&pk, s->with_body ? 4 : 3);
    msgpack_pack_str_with_body(&pk, "v", 1);
    msgpack_pack_int(&pk, s->version);
    msgpack_pack_str_with_body(&pk, "type", 4);
    msgpack_pack_str_with_body(&pk, s->type, strlen(s->type));
    msgpack_pack_str_with_body(&pk, "id", 2);
    msgpack_pack_uint64(&pk, 5);
    if (!s->with_body)
        return;
    msgpack_pack_str_with_body(&pk, "body", 4);
    if (s->body_not_map) {
        msgpack_pack_array(&pk, 0);
        return;
    }
    msgpack_pack_map(&pk, s->body_key ? 1 : 0);
    if (!s->body_key)
        return;
    msgpack_pack_str_with_body(&pk, s->body_key, strlen(s->body_key));
    switch (s->body_kind) {
    case 0: msgpack_pack_str_with_body(&pk, "x", 1); break;
    case 1: msgpack_pack_uint64(&pk, 3); break;
    case 2: msgpack_pack_int64(&pk, -3); break;
    default: msgpack_pack_true(&pk); break;
    }
}

static int decode_spec(const env_spec_t *s, char *err, size_t errlen, uint64_t *ret_id) {
    msgpack_sbuffer sb;
    pack_env(s, &sb);
    nx_msg_t *m = NULL;
    int rc = nx_msg_decode(sb.data, sb.size, &m, ret_id, err, errlen);
    nx_msg_destroy(&m);
    msgpack_sbuffer_destroy(&sb);
    return rc;
}

static void test_malformed_envelopes_name_the_problem(void **state) {
    char err[256];
    uint64_t id = 0;
    env_spec_t ok = {"status", 1, true, false, "task", 1};
    assert_int_equal(decode_spec(&ok, err, sizeof err, &id), 0);

    env_spec_t unknown = {"frobnicate", 1, true, false, NULL, 0};
    assert_int_equal(decode_spec(&unknown, err, sizeof err, &id), NX_EUNKTYPE);
    assert_non_null(strstr(err, "frobnicate"));
    assert_int_equal(id, 5); /* the sender can still be told */

    env_spec_t version = {"status", 2, true, false, "task", 1};
    assert_int_equal(decode_spec(&version, err, sizeof err, NULL), NX_EVERSION);
    assert_non_null(strstr(err, "version 2"));

    env_spec_t nobody = {"status", 1, false, false, NULL, 0};
    assert_int_equal(decode_spec(&nobody, err, sizeof err, NULL), NX_EBADMSG);
    assert_non_null(strstr(err, "'body'"));

    env_spec_t arraybody = {"status", 1, true, true, NULL, 0};
    assert_int_equal(decode_spec(&arraybody, err, sizeof err, NULL), NX_EBADMSG);
    assert_non_null(strstr(err, "must be a map"));

    env_spec_t missing = {"status", 1, true, false, NULL, 0};
    assert_int_equal(decode_spec(&missing, err, sizeof err, NULL), NX_EBADMSG);
    assert_non_null(strstr(err, "required field 'task'"));

    env_spec_t wrongkind = {"status", 1, true, false, "task", 0};
    assert_int_equal(decode_spec(&wrongkind, err, sizeof err, NULL), NX_EBADMSG);
    assert_non_null(strstr(err, "'task' must be a non-negative integer"));

    env_spec_t negative = {"status", 1, true, false, "task", 2};
    assert_int_equal(decode_spec(&negative, err, sizeof err, NULL), NX_EBADMSG);

    env_spec_t boolstr = {"result", 1, true, false, "ok", 0};
    assert_int_equal(decode_spec(&boolstr, err, sizeof err, NULL), NX_EBADMSG);
}

static void test_garbage_frames_are_rejected(void **state) {
    char err[256];
    nx_msg_t *m = NULL;
    /* empty, a lone byte, the never-used 0xc1, an array claiming 4 billion
     * elements in 5 bytes, a str32 claiming 4 GB, trailing bytes */
    static const struct {
        const char *bytes;
        size_t len;
    } cases[] = {
        {"", 0},
        {"\x81", 1},
        {"\xc1", 1},
        {"\xdd\xff\xff\xff\xff", 5},
        {"\xdb\xff\xff\xff\xff" "abc", 8},
        {"\x80\x00", 2},
        {"\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x91\x90", 13},
        {"\xa3" "abc", 4},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        err[0] = '\0';
        int rc = nx_msg_decode(cases[i].bytes, cases[i].len, &m, NULL, err, sizeof err);
        assert_true(rc < 0);
        assert_null(m);
        assert_true(strlen(err) > 0);
    }
}

static void test_invalid_utf8_string_is_rejected(void **state) {
    nx_msg_t *m = nx_msg_new(NX_MSG_SUBMIT);
    nx_msg_set_id(m, 1);
    nx_msg_set_str(m, "dept", "qa");
    nx_msg_set_str(m, "input", "x");
    nx_msg_set_str(m, "idem_key", "ab");
    void *buf;
    size_t len;
    assert_int_equal(nx_msg_encode(m, &buf, &len), 0);
    /* Turn "ab" into "a\xff". */
    char *p = memmem(buf, len, "\xa2" "ab", 3);
    assert_non_null(p);
    p[2] = (char)0xff;
    nx_msg_t *d = NULL;
    char err[256];
    assert_int_equal(nx_msg_decode(buf, len, &d, NULL, err, sizeof err), NX_EBADMSG);
    assert_non_null(strstr(err, "UTF-8"));
    free(buf);
    nx_msg_destroy(&m);
}

/* Every prefix of a valid frame is rejected cleanly (no over-read; ASan
 * checks the "cleanly"). */
static void test_every_truncation_is_rejected(void **state) {
    nx_msg_t *m = sample(NX_MSG_RESULT);
    void *buf;
    size_t len;
    assert_int_equal(nx_msg_encode(m, &buf, &len), 0);
    for (size_t n = 0; n < len; n++) {
        void *copy = malloc(n ? n : 1);
        memcpy(copy, buf, n);
        nx_msg_t *d = NULL;
        assert_true(nx_msg_decode(copy, n, &d, NULL, NULL, 0) < 0);
        free(copy);
    }
    free(buf);
    nx_msg_destroy(&m);
}

static uint64_t s_rng = 0x9e3779b97f4a7c15ULL;
static uint64_t rnd(void) {
    s_rng ^= s_rng << 13;
    s_rng ^= s_rng >> 7;
    s_rng ^= s_rng << 17;
    return s_rng;
}

static void mutate_and_decode(const uint8_t *seed, size_t len, int rounds) {
    uint8_t *buf = malloc(len + 64);
    for (int r = 0; r < rounds; r++) {
        size_t n = len;
        memcpy(buf, seed, len);
        int edits = 1 + (int)(rnd() % 4);
        for (int e = 0; e < edits; e++) {
            switch (rnd() % 4) {
            case 0:
                if (n)
                    buf[rnd() % n] ^= (uint8_t)(1u << (rnd() % 8));
                break;
            case 1:
                if (n)
                    buf[rnd() % n] = (uint8_t)rnd();
                break;
            case 2:
                if (n)
                    n = rnd() % n;
                break;
            default:
                if (n < len + 60) {
                    size_t at = n ? rnd() % n : 0;
                    memmove(buf + at + 1, buf + at, n - at);
                    buf[at] = (uint8_t)rnd();
                    n++;
                }
            }
        }
        nx_msg_t *d = NULL;
        char err[128];
        if (nx_msg_decode(buf, n, &d, NULL, err, sizeof err) == 0) {
            void *out;
            size_t outlen;
            /* What decodes must encode again. */
            if (nx_msg_encode(d, &out, &outlen) == 0)
                free(out);
        }
        nx_msg_destroy(&d);
    }
    free(buf);
}

static void test_corpus_replay_and_mutations(void **state) {
    int files = 0;
    DIR *dir = opendir(NX_CORPUS_DIR);
    assert_non_null(dir);
    struct dirent *de;
    while ((de = readdir(dir))) {
        if (de->d_name[0] == '.')
            continue;
        char path[1024];
        snprintf(path, sizeof path, "%s/%s", NX_CORPUS_DIR, de->d_name);
        FILE *f = fopen(path, "rb");
        assert_non_null(f);
        uint8_t data[8192];
        size_t n = fread(data, 1, sizeof data, f);
        fclose(f);
        nx_msg_t *d = NULL;
        nx_msg_decode(data, n, &d, NULL, NULL, 0);
        nx_msg_destroy(&d);
        mutate_and_decode(data, n, 2000);
        files++;
    }
    closedir(dir);
    assert_true(files >= NX_MSG__COUNT);
}

static void test_strerror_covers_codes(void **state) {
    assert_string_equal(nx_strerror(NX_EBADMSG), "malformed message");
    assert_string_equal(nx_strerror(-2), "No such file or directory");
    nx_msg_type_t t;
    assert_int_equal(nx_msg_type_from_name("submit", &t), 0);
    assert_int_equal(t, NX_MSG_SUBMIT);
    assert_int_equal(nx_msg_type_from_name("nope", &t), NX_EUNKTYPE);
}

int main(int argc, char **argv) {
    /* `test_proto --write-corpus DIR` writes one seed per message type. */
    if (argc == 3 && !strcmp(argv[1], "--write-corpus")) {
        for (int t = 0; t < NX_MSG__COUNT; t++) {
            nx_msg_t *m = sample((nx_msg_type_t)t);
            void *buf;
            size_t len;
            if (nx_msg_encode(m, &buf, &len) == 0) {
                char path[1024];
                snprintf(path, sizeof path, "%s/%s.msgpack", argv[2], nx_msg_type_name(t));
                FILE *f = fopen(path, "wb");
                fwrite(buf, 1, len, f);
                fclose(f);
                free(buf);
            }
            nx_msg_destroy(&m);
        }
        return 0;
    }
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_every_type_round_trips),
        cmocka_unit_test(test_body_values_survive),
        cmocka_unit_test(test_missing_required_field_is_not_encoded),
        cmocka_unit_test(test_malformed_envelopes_name_the_problem),
        cmocka_unit_test(test_garbage_frames_are_rejected),
        cmocka_unit_test(test_invalid_utf8_string_is_rejected),
        cmocka_unit_test(test_every_truncation_is_rejected),
        cmocka_unit_test(test_corpus_replay_and_mutations),
        cmocka_unit_test(test_strerror_covers_codes),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
