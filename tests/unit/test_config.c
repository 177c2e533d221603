/*  test_config - the company file: a good one loads with its defaults, and
 *  each kind of mistake is reported with file, line and field. */
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

static int load_text(const char *text, nx_company_t **ret, char *err, size_t errlen) {
    snprintf(s_path, sizeof s_path, "/tmp/nx-test-config-%d.yaml", (int)getpid());
    FILE *f = fopen(s_path, "w");
    fputs(text, f);
    fclose(f);
    int rc = nx_company_load(s_path, ret, err, errlen);
    unlink(s_path);
    return rc;
}

static void test_good_company_loads_with_defaults(void **state) {
    nx_company_t *co = NULL;
    char err[512];
    int rc = load_text("company: acme\n"
                       "departments:\n"
                       "  product:\n"
                       "    agent: sim\n"
                       "    employees: 2\n"
                       "  engineering:\n"
                       "    agent: {kind: exec, command: [sh, -c, 'cat']}\n"
                       "    employees: [ada, linus]\n"
                       "    capacity: 4\n",
                       &co, err, sizeof err);
    assert_int_equal(rc, 0);
    assert_string_equal(co->name, "acme");
    assert_int_equal(co->ndepts, 2);
    assert_int_equal(co->nemployees, 4);
    assert_string_equal(co->employees[0].name, "product-1");
    assert_string_equal(co->employees[3].name, "linus");
    assert_int_equal(co->depts[1].capacity, 4);
    assert_int_equal(co->depts[0].capacity, 1);
    assert_int_equal(co->depts[0].max_attempts, 3);
    assert_int_equal(co->heartbeat_ms, 1000);
    assert_int_equal(co->liveness, 3);
    assert_true(co->sync_full);
    assert_int_equal(co->depts[1].agent.kind, NX_AGENT_EXEC);
    assert_string_equal(co->depts[1].agent.command[2], "cat");
    assert_int_equal(co->depts[0].agent.max_output, 1 << 20);
    assert_int_equal(nx_company_dept(co, "engineering"), 1);
    assert_int_equal(nx_company_employee(co, "nobody"), -1);
    nx_company_destroy(&co);
    assert_null(co);
}

typedef struct {
    const char *text;
    const char *expect; /* a piece of the message, after "FILE:" */
} bad_t;

static void test_each_mistake_names_file_line_and_field(void **state) {
    static const bad_t cases[] = {
        {"company: acme\ndepartments:\n  qa:\n    agent: sim\n    employes: 1\n",
         ":5: departments.qa.employes: unknown key"},
        {"company: acme\ndepartments:\n  qa:\n    agent: sim\n", ":3: departments.qa: 'employees' is missing"},
        {"departments:\n  qa:\n    agent: sim\n    employees: 1\n", ":1: company: 'company'"},
        {"company: acme\n", "departments: 'departments' is missing"},
        {"company: acme\ndepartments:\n  qa:\n    agent: {kind: robot}\n    employees: 1\n",
         ":4: departments.qa.agent.kind: unknown agent kind 'robot'"},
        {"company: acme\ndepartments:\n  qa:\n    agent: {kind: exec}\n    employees: 1\n",
         "departments.qa.agent: an exec agent needs 'command'"},
        {"company: acme\ndepartments:\n  qa:\n    agent: sim\n    employees: many\n",
         ":5: departments.qa.employees: 'many' is not a whole number"},
        {"company: acme\ndepartments:\n  qa:\n    agent: sim\n    employees: 1\n    capacity: 0\n",
         ":6: departments.qa.capacity: 0 is out of range"},
        {"company: acme\ndepartments:\n  qa:\n    agent: sim\n    employees: [a, a]\n",
         "employee 'a' is defined twice"},
        {"company: acme\ndepartments:\n  QA:\n    agent: sim\n    employees: 1\n",
         ":3: departments.QA: department name"},
        {"company: acme\ndepartments:\n  qa:\n    agent: {kind: sim, work: soon}\n    employees: 1\n",
         ":4: departments.qa.agent.work: 'soon' is not a duration"},
        {"company: acme\nceo:\n  heartbeat: 1ms\ndepartments:\n  qa:\n    agent: sim\n    employees: 1\n",
         "ceo.heartbeat: must be between"},
        {"company: acme\ndepartments: [1, 2]\n", ":2: departments: expected a mapping"},
        {"company: acme\ndepartments:\n  qa: {agent: sim, employees: 1\n", "YAML syntax error"},
        {"", "the file is empty"},
        {"company: acme\nfoo: 1\ndepartments:\n  qa:\n    agent: sim\n    employees: 1\n",
         ":2: foo: unknown key"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        nx_company_t *co = NULL;
        char err[512] = "";
        int rc = load_text(cases[i].text, &co, err, sizeof err);
        if (rc != NX_ECONFIG || !strstr(err, cases[i].expect))
            fail_msg("case %zu: rc %d, message \"%s\", expected \"%s\"", i, rc, err,
                     cases[i].expect);
        assert_null(co);
        assert_true(strncmp(err, s_path, strlen(s_path)) == 0);
    }
}

static void test_missing_file_is_a_clear_error(void **state) {
    nx_company_t *co = NULL;
    char err[512];
    assert_int_equal(nx_company_load("/nonexistent/company.yaml", &co, err, sizeof err), -2);
    assert_non_null(strstr(err, "/nonexistent/company.yaml: cannot open company file"));
}

static void test_durations_and_sizes_parse(void **state) {
    int64_t ms;
    uint64_t b;
    assert_int_equal(nx_parse_duration("250ms", &ms), 0);
    assert_int_equal(ms, 250);
    assert_int_equal(nx_parse_duration("30s", &ms), 0);
    assert_int_equal(ms, 30000);
    assert_int_equal(nx_parse_duration("2m", &ms), 0);
    assert_int_equal(ms, 120000);
    assert_int_equal(nx_parse_duration("1.5", &ms), 0);
    assert_int_equal(ms, 1500);
    assert_int_equal(nx_parse_duration("-1s", &ms), NX_EUSAGE);
    assert_int_equal(nx_parse_duration("3 parsecs", &ms), NX_EUSAGE);
    assert_int_equal(nx_parse_size("64K", &b), 0);
    assert_int_equal(b, 65536);
    assert_int_equal(nx_parse_size("1M", &b), 0);
    assert_int_equal(b, 1048576);
    assert_int_equal(nx_parse_size("lots", &b), NX_EUSAGE);
    assert_true(nx_name_ok("eng-1"));
    assert_false(nx_name_ok("Eng"));
    assert_false(nx_name_ok("-x"));
    assert_false(nx_name_ok(""));
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_good_company_loads_with_defaults),
        cmocka_unit_test(test_each_mistake_names_file_line_and_field),
        cmocka_unit_test(test_missing_file_is_a_clear_error),
        cmocka_unit_test(test_durations_and_sizes_parse),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
