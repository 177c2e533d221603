/*  test_store - the ledger: inserts, idempotency keys, the state machine,
 *  recovery of running tasks, events; on a real SQLite file. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "nx_runtime.h"

static char s_path[256];

static int setup(void **state) {
    snprintf(s_path, sizeof s_path, "/tmp/nx-test-store-%d.db", (int)getpid());
    unlink(s_path);
    nx_store_t *st = NULL;
    char err[256];
    assert_int_equal(nx_store_open(s_path, true, &st, err, sizeof err), 0);
    *state = st;
    return 0;
}

static int teardown(void **state) {
    nx_store_t *st = *state;
    nx_store_destroy(&st);
    char p[300];
    unlink(s_path);
    snprintf(p, sizeof p, "%s-wal", s_path);
    unlink(p);
    snprintf(p, sizeof p, "%s-shm", s_path);
    unlink(p);
    return 0;
}

static int64_t insert(nx_store_t *st, const char *input, const char *key) {
    nx_task_t t = {0};
    t.dept = "qa";
    t.input = (void *)input;
    t.input_len = strlen(input);
    t.idem_key = (char *)key;
    t.created_ms = 1;
    int64_t id;
    assert_true(nx_store_task_insert(st, &t, &id) >= 0);
    return id;
}

static void test_insert_then_get_returns_the_task(void **state) {
    nx_store_t *st = *state;
    assert_int_equal(nx_store_begin(st), 0);
    int64_t id = insert(st, "hello", NULL);
    assert_int_equal(nx_store_commit(st), 0);
    nx_task_t t;
    assert_int_equal(nx_store_task_get(st, id, &t), 0);
    assert_string_equal(t.dept, "qa");
    assert_int_equal(t.input_len, 5);
    assert_memory_equal(t.input, "hello", 5);
    assert_int_equal(t.state, NX_TASK_QUEUED);
    assert_int_equal(t.max_attempts, 3);
    nx_task_clear(&t);
    assert_int_equal(nx_store_task_get(st, 9999, &t), NX_ENOTFOUND);
}

static void test_idempotency_key_returns_existing_task(void **state) {
    nx_store_t *st = *state;
    nx_store_begin(st);
    int64_t a = insert(st, "x", "k1");
    nx_task_t t = {.dept = "qa", .input = "y", .input_len = 1, .idem_key = "k1"};
    int64_t b;
    assert_int_equal(nx_store_task_insert(st, &t, &b), 1);
    assert_int_equal(a, b);
    nx_store_commit(st);
}

static void test_attempt_lifecycle_is_recorded(void **state) {
    nx_store_t *st = *state;
    nx_store_begin(st);
    int64_t id = insert(st, "x", NULL);
    assert_int_equal(nx_store_task_start(st, id, 1, "qa-1", 10), 0);
    assert_int_equal(nx_store_task_finish(st, id, 1, NX_TASK_QUEUED, -1, NULL, 0, "lost", 11), 0);
    assert_int_equal(nx_store_task_start(st, id, 2, "qa-2", 12), 0);
    assert_int_equal(nx_store_task_finish(st, id, 2, NX_TASK_SUCCEEDED, 0, "out", 3, NULL, 13), 0);
    nx_store_commit(st);
    nx_task_t t;
    assert_int_equal(nx_store_task_get(st, id, &t), 0);
    assert_int_equal(t.state, NX_TASK_SUCCEEDED);
    assert_int_equal(t.attempts, 2);
    assert_string_equal(t.employee, "qa-2");
    assert_int_equal(t.finished_ms, 13);
    assert_memory_equal(t.output, "out", 3);
    nx_task_clear(&t);
}

static int count_fn(const nx_task_t *t, void *arg) {
    (*(int *)arg)++;
    return 0;
}

static void test_requeue_closes_the_attempt_and_delays_the_task(void **state) {
    nx_store_t *st = *state;
    nx_store_begin(st);
    int64_t a = insert(st, "a", NULL);
    insert(st, "b", NULL);
    nx_store_task_start(st, a, 1, "qa-1", 5);
    nx_store_commit(st);
    int n = 0;
    nx_store_task_foreach(st, NX_TASK_RUNNING, NULL, 0, 0, false, count_fn, &n);
    assert_int_equal(n, 1);
    nx_store_begin(st);
    assert_int_equal(nx_store_task_requeue(st, a, 1, "lost", -1, "restart", 100, 6), 0);
    nx_store_commit(st);
    nx_task_t t;
    assert_int_equal(nx_store_task_brief(st, a, &t), 0);
    assert_int_equal(t.run_after_ms, 100);
    assert_string_equal(t.error, "restart");
    nx_task_clear(&t);
    char *hist = NULL;
    assert_int_equal(nx_store_task_history(st, a, &hist), 0);
    assert_non_null(strstr(hist, "attempt 1 on qa-1: lost after 1 ms: restart"));
    free(hist);
    n = 0;
    nx_store_task_foreach(st, NX_TASK_QUEUED, "qa", 0, 0, false, count_fn, &n);
    assert_int_equal(n, 2);
    n = 0;
    nx_store_task_foreach(st, -1, NULL, a, 0, false, count_fn, &n);
    assert_int_equal(n, 1); /* only the one after a */
}

static int ev_fn(uint64_t seq, int64_t ts, const char *topic, int64_t task, const char *emp,
                 const char *detail, void *arg) {
    (*(int *)arg)++;
    assert_true(strncmp(topic, "task.", 5) == 0);
    return 0;
}

static void test_events_filter_by_topic_prefix(void **state) {
    nx_store_t *st = *state;
    nx_store_begin(st);
    nx_store_event_append(st, 1, 1, "task.submitted", 1, NULL, NULL);
    nx_store_event_append(st, 2, 2, "employee.joined", 0, "qa-1", NULL);
    nx_store_event_append(st, 3, 3, "task.started", 1, "qa-1", NULL);
    nx_store_commit(st);
    int n = 0;
    nx_store_event_foreach(st, "task.", 0, 10, ev_fn, &n);
    assert_int_equal(n, 2);
    assert_int_equal(nx_store_event_last_seq(st), 3);
}

static void test_cancel_and_retry(void **state) {
    nx_store_t *st = *state;
    nx_store_begin(st);
    int64_t id = insert(st, "c", NULL);
    nx_store_task_start(st, id, 1, "qa-1", 1);
    assert_int_equal(nx_store_task_cancel(st, id, 1, "cancelled by a client", 2), 0);
    nx_task_t t;
    nx_store_task_brief(st, id, &t);
    assert_int_equal(t.state, NX_TASK_CANCELLED);
    nx_task_clear(&t);
    assert_int_equal(nx_store_task_retry(st, id, 3), 0);
    nx_store_task_brief(st, id, &t);
    assert_int_equal(t.state, NX_TASK_QUEUED);
    assert_int_equal(t.max_attempts, 4);
    assert_null(t.error);
    nx_task_clear(&t);
    nx_store_commit(st);
}

static void test_commit_survives_reopen(void **state) {
    nx_store_t *st = *state;
    nx_store_begin(st);
    int64_t id = insert(st, "durable", NULL);
    nx_store_commit(st);
    nx_store_destroy(&st);
    char err[256];
    assert_int_equal(nx_store_open(s_path, true, &st, err, sizeof err), 0);
    *state = st;
    nx_task_t t;
    assert_int_equal(nx_store_task_get(st, id, &t), 0);
    assert_memory_equal(t.input, "durable", 7);
    nx_task_clear(&t);
}

static void test_unwritable_ledger_is_a_clear_error(void **state) {
    nx_store_t *st = NULL;
    char err[256];
    assert_int_equal(nx_store_open("/nonexistent/dir/ledger.db", true, &st, err, sizeof err),
                     NX_ESTORE);
    assert_non_null(strstr(err, "/nonexistent/dir/ledger.db"));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_insert_then_get_returns_the_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_idempotency_key_returns_existing_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_attempt_lifecycle_is_recorded, setup, teardown),
        cmocka_unit_test_setup_teardown(test_requeue_closes_the_attempt_and_delays_the_task, setup, teardown),
        cmocka_unit_test_setup_teardown(test_events_filter_by_topic_prefix, setup, teardown),
        cmocka_unit_test_setup_teardown(test_cancel_and_retry, setup, teardown),
        cmocka_unit_test_setup_teardown(test_commit_survives_reopen, setup, teardown),
        cmocka_unit_test(test_unwritable_ledger_is_a_clear_error),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
