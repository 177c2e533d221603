/*  test_agents - every adapter: the command line it builds (the flags of
 *  that CLI's non-interactive mode, where the prompt goes), and what it
 *  reads from that CLI's real output format (tests/fixtures/): the result,
 *  usage, the CLI's own errors, a stream cut mid-line, and the structured
 *  tail (verdict, subtasks) any agent may end with. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "nx_agents.h"

static char *fixture(const char *name, size_t *len) {
    char path[512];
    snprintf(path, sizeof path, "%s/%s", NX_FIXTURES_DIR, name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    char *buf = malloc(1 << 20);
    *len = fread(buf, 1, (1 << 20) - 1, f);
    buf[*len] = '\0';
    fclose(f);
    return buf;
}

static bool has_arg(char **argv, const char *a) {
    for (; *argv; argv++)
        if (!strcmp(*argv, a))
            return true;
    return false;
}

/* The argument right after flag, or NULL. */
static const char *arg_after(char **argv, const char *flag) {
    for (; *argv; argv++)
        if (!strcmp(*argv, flag))
            return argv[1];
    return NULL;
}

static int parse_fixture(nx_agent_kind_t kind, const char *name, int exit_code,
                         nx_agent_report_t *r, char *err) {
    nx_agent_conf_t conf = {.kind = kind};
    size_t len;
    char *out = fixture(name, &len);
    int rc = nx_agent_parse(&conf, out, len, exit_code, r, err, 512);
    free(out);
    return rc;
}

static void test_claude_command(void **state) {
    char *tools[] = {"Bash(git:*)", "Edit", NULL};
    nx_agent_conf_t conf = {.kind = NX_AGENT_CLAUDE, .model = "sonnet",
                            .permission_mode = "acceptEdits", .allowed_tools = tools};
    nx_agent_cmd_t cmd;
    char err[512];
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", "engineering", "fix it", 6, &cmd, err,
                                      sizeof err),
                     0);
    assert_string_equal(cmd.argv[0], "claude");
    assert_true(has_arg(cmd.argv, "-p"));
    assert_string_equal(arg_after(cmd.argv, "--output-format"), "stream-json");
    assert_true(has_arg(cmd.argv, "--verbose")); /* stream-json needs it */
    assert_string_equal(arg_after(cmd.argv, "--model"), "sonnet");
    assert_string_equal(arg_after(cmd.argv, "--permission-mode"), "acceptEdits");
    assert_string_equal(arg_after(cmd.argv, "--allowedTools"), "Bash(git:*),Edit");
    assert_false(has_arg(cmd.argv, "fix it")); /* the prompt goes on stdin */
    assert_int_equal(cmd.stdin_len, 6);
    assert_memory_equal(cmd.stdin_data, "fix it", 6);
    nx_agent_cmd_clear(&cmd);
}

static void test_claude_output(void **state) {
    nx_agent_report_t r;
    char err[512];
    assert_int_equal(parse_fixture(NX_AGENT_CLAUDE, "claude/ok.jsonl", 0, &r, err), 0);
    assert_string_equal(r.result, "All 3 tests pass; the --verbose flag is added in cli.py.");
    assert_null(r.error);
    assert_int_equal(r.tokens_in, 1520 + 4096);
    assert_int_equal(r.tokens_out, 310);
    assert_int_equal(r.cost_microusd, 42100);
    assert_int_equal(r.duration_ms, 8123);
    assert_string_equal(r.session, "3f6c2a8e-1b7d-4c59-9f0e-2a1d5e8b7c40");
    nx_agent_report_clear(&r);

    assert_int_equal(parse_fixture(NX_AGENT_CLAUDE, "claude/error.jsonl", 1, &r, err), 0);
    assert_non_null(r.error);
    assert_non_null(strstr(r.error, "error_max_turns"));
    assert_int_equal(r.cost_microusd, 187500);
    nx_agent_report_clear(&r);

    assert_int_equal(parse_fixture(NX_AGENT_CLAUDE, "claude/malformed.jsonl", 0, &r, err),
                     NX_EBADMSG);
    assert_non_null(strstr(err, "claude output line 3 is not a JSON object"));
}

static void test_claude_stream_without_result_is_an_error(void **state) {
    nx_agent_conf_t conf = {.kind = NX_AGENT_CLAUDE};
    const char *out = "{\"type\":\"system\",\"subtype\":\"init\"}\n";
    nx_agent_report_t r;
    char err[512];
    assert_int_equal(nx_agent_parse(&conf, out, strlen(out), 0, &r, err, sizeof err), NX_EBADMSG);
    assert_non_null(strstr(err, "without a \"result\" event"));
    /* An agent that exited early (non-zero) is a failure already, not a format error. */
    assert_int_equal(nx_agent_parse(&conf, out, strlen(out), 1, &r, err, sizeof err), 0);
    nx_agent_report_clear(&r);
}

static void test_codex_command_and_output(void **state) {
    nx_agent_conf_t conf = {.kind = NX_AGENT_CODEX, .permission_mode = "workspace-write"};
    nx_agent_cmd_t cmd;
    char err[512];
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", NULL, "fix it", 6, &cmd, err, sizeof err),
                     0);
    assert_string_equal(cmd.argv[0], "codex");
    assert_string_equal(cmd.argv[1], "exec");
    assert_true(has_arg(cmd.argv, "--json"));
    assert_string_equal(arg_after(cmd.argv, "--sandbox"), "workspace-write");
    size_t n = 0;
    while (cmd.argv[n])
        n++;
    assert_string_equal(cmd.argv[n - 1], "fix it"); /* the prompt is the last argument */
    assert_null(cmd.stdin_data);                    /* and stdin is empty */
    nx_agent_cmd_clear(&cmd);

    nx_agent_report_t r;
    assert_int_equal(parse_fixture(NX_AGENT_CODEX, "codex/ok.jsonl", 0, &r, err), 0);
    assert_string_equal(r.result, "Added the --verbose flag to cli.py; all 3 tests pass.");
    assert_int_equal(r.tokens_in, 24763);
    assert_int_equal(r.tokens_out, 122);
    assert_string_equal(r.session, "0199a213-81c0-7800-8aa1-bbab2a035a53");
    nx_agent_report_clear(&r);
    assert_int_equal(parse_fixture(NX_AGENT_CODEX, "codex/error.jsonl", 1, &r, err), 0);
    assert_non_null(strstr(r.error, "401 Unauthorized"));
    nx_agent_report_clear(&r);
    assert_int_equal(parse_fixture(NX_AGENT_CODEX, "codex/malformed.jsonl", 0, &r, err),
                     NX_EBADMSG);
}

static void test_gemini_command_and_output(void **state) {
    nx_agent_conf_t conf = {.kind = NX_AGENT_GEMINI, .model = "gemini-2.5-pro",
                            .permission_mode = "auto_edit"};
    nx_agent_cmd_t cmd;
    char err[512];
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", NULL, "fix it", 6, &cmd, err, sizeof err),
                     0);
    assert_string_equal(arg_after(cmd.argv, "-p"), "fix it");
    assert_string_equal(arg_after(cmd.argv, "--output-format"), "stream-json");
    assert_string_equal(arg_after(cmd.argv, "-m"), "gemini-2.5-pro");
    assert_string_equal(arg_after(cmd.argv, "--approval-mode"), "auto_edit");
    nx_agent_cmd_clear(&cmd);

    nx_agent_report_t r;
    assert_int_equal(parse_fixture(NX_AGENT_GEMINI, "gemini/ok.jsonl", 0, &r, err), 0);
    /* The assistant's deltas, joined; the user's echo is not part of it. */
    assert_string_equal(r.result, "Added the --verbose flag; all 3 tests pass.");
    assert_int_equal(r.tokens_in, 2100);
    assert_int_equal(r.tokens_out, 350);
    assert_int_equal(r.duration_ms, 4200);
    nx_agent_report_clear(&r);
    assert_int_equal(parse_fixture(NX_AGENT_GEMINI, "gemini/error.jsonl", 1, &r, err), 0);
    assert_non_null(strstr(r.error, "Quota exceeded"));
    nx_agent_report_clear(&r);
    assert_int_equal(parse_fixture(NX_AGENT_GEMINI, "gemini/malformed.jsonl", 0, &r, err),
                     NX_EBADMSG);
}

static void test_copilot_and_aider(void **state) {
    nx_agent_conf_t conf = {.kind = NX_AGENT_COPILOT};
    nx_agent_cmd_t cmd;
    char err[512];
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", NULL, "fix it", 6, &cmd, err, sizeof err),
                     0);
    assert_string_equal(cmd.argv[0], "copilot");
    assert_string_equal(arg_after(cmd.argv, "-p"), "fix it");
    assert_true(has_arg(cmd.argv, "-s"));
    assert_true(has_arg(cmd.argv, "--allow-all-tools")); /* no tools named: all, sandboxed */
    nx_agent_cmd_clear(&cmd);
    char *tools[] = {"shell(git)", NULL};
    conf.allowed_tools = tools;
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", NULL, "x", 1, &cmd, err, sizeof err), 0);
    assert_string_equal(arg_after(cmd.argv, "--allow-tool"), "shell(git)");
    assert_false(has_arg(cmd.argv, "--allow-all-tools"));
    nx_agent_cmd_clear(&cmd);

    nx_agent_conf_t aider = {.kind = NX_AGENT_AIDER, .model = "sonnet"};
    assert_int_equal(nx_agent_command(&aider, "/x/nexus", NULL, "fix it", 6, &cmd, err, sizeof err),
                     0);
    assert_string_equal(arg_after(cmd.argv, "--message"), "fix it");
    assert_true(has_arg(cmd.argv, "--yes-always"));
    assert_true(has_arg(cmd.argv, "--no-auto-commits"));
    assert_true(has_arg(cmd.argv, "--no-stream"));
    nx_agent_cmd_clear(&cmd);
    nx_agent_report_t r;
    assert_int_equal(parse_fixture(NX_AGENT_AIDER, "aider/ok.txt", 0, &r, err), 0);
    assert_int_equal(r.tokens_in, 4500);
    assert_int_equal(r.tokens_out, 1200);
    assert_int_equal(r.cost_microusd, 30000);
    assert_non_null(strstr(r.result, "Applied edit to cli.py"));
    nx_agent_report_clear(&r);
}

static void test_prompt_too_large_for_an_argument(void **state) {
    size_t len = 200 * 1024;
    char *big = malloc(len);
    memset(big, 'a', len);
    nx_agent_conf_t conf = {.kind = NX_AGENT_CODEX};
    nx_agent_cmd_t cmd;
    char err[512];
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", NULL, big, len, &cmd, err, sizeof err),
                     NX_EUSAGE);
    assert_non_null(strstr(err, "too large"));
    /* claude takes it on stdin: no limit there. */
    conf.kind = NX_AGENT_CLAUDE;
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", NULL, big, len, &cmd, err, sizeof err), 0);
    nx_agent_cmd_clear(&cmd);
    free(big);
}

static void test_exec_input_template(void **state) {
    char *command[] = {"python3", "review.py", "--text={input}", NULL};
    nx_agent_conf_t conf = {.kind = NX_AGENT_EXEC, .command = command};
    nx_agent_cmd_t cmd;
    char err[512];
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", NULL, "a b", 3, &cmd, err, sizeof err), 0);
    assert_string_equal(cmd.argv[2], "--text=a b");
    assert_null(cmd.stdin_data);
    nx_agent_cmd_clear(&cmd);
    char *plain[] = {"cat", NULL};
    conf.command = plain;
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", NULL, "a b", 3, &cmd, err, sizeof err), 0);
    assert_int_equal(cmd.stdin_len, 3);
    nx_agent_cmd_clear(&cmd);
}

static void test_structured_tail(void **state) {
    nx_agent_conf_t conf = {.kind = NX_AGENT_EXEC};
    nx_agent_report_t r;
    char err[512];
    const char *review = "Looked at it.\n{\"verdict\": \"reject\", \"findings\": \"no tests\"}\n";
    assert_int_equal(nx_agent_parse(&conf, review, strlen(review), 0, &r, err, sizeof err), 0);
    assert_string_equal(r.verdict, "reject");
    nx_agent_report_clear(&r);
    const char *plan = "Here is the plan.\n```json\n{\"subtasks\": [\"api\", {\"task\": \"ui\"}]}\n```\n";
    assert_int_equal(nx_agent_parse(&conf, plan, strlen(plan), 0, &r, err, sizeof err), 0);
    assert_int_equal(r.nsubtasks, 2);
    assert_string_equal(r.subtasks[0], "api");
    assert_string_equal(r.subtasks[1], "ui");
    nx_agent_report_clear(&r);
    /* Exiting with NX_AGENT_EXIT_REJECT is a rejection. */
    assert_int_equal(nx_agent_parse(&conf, "meh", 3, NX_AGENT_EXIT_REJECT, &r, err, sizeof err), 0);
    assert_string_equal(r.verdict, "reject");
    nx_agent_report_clear(&r);
    /* Plain text has no verdict. */
    assert_int_equal(nx_agent_parse(&conf, "done {", 6, 0, &r, err, sizeof err), 0);
    assert_null(r.verdict);
    assert_null(r.subtasks);
    nx_agent_report_clear(&r);
}

static void test_progress_lines(void **state) {
    char buf[200];
    nx_agent_conf_t claude = {.kind = NX_AGENT_CLAUDE};
    const char *tool = "{\"type\":\"assistant\",\"message\":{\"content\":[{\"type\":\"tool_use\","
                       "\"name\":\"Bash\",\"input\":{\"command\":\"pytest -q\"}}]}}";
    assert_int_equal(nx_agent_progress(&claude, tool, strlen(tool), buf, sizeof buf), 1);
    assert_string_equal(buf, "tool Bash: {\"command\":\"pytest -q\"}");
    assert_int_equal(nx_agent_progress(&claude, "not json", 8, buf, sizeof buf), 0);
    nx_agent_conf_t codex = {.kind = NX_AGENT_CODEX};
    const char *run = "{\"type\":\"item.started\",\"item\":{\"type\":\"command_execution\","
                      "\"command\":\"ls\"}}";
    assert_int_equal(nx_agent_progress(&codex, run, strlen(run), buf, sizeof buf), 1);
    assert_string_equal(buf, "run: ls");
    /* Long text is cut to fit, on one line. */
    char line[600];
    snprintf(line, sizeof line, "{\"type\":\"item.started\",\"item\":{\"type\":"
                                "\"command_execution\",\"command\":\"%0500d\"}}", 7);
    assert_int_equal(nx_agent_progress(&codex, line, strlen(line), buf, 40), 1);
    assert_int_equal(strlen(buf), 39);
    assert_string_equal(buf + 36, "...");
    nx_agent_conf_t sim = {.kind = NX_AGENT_SIM};
    assert_int_equal(nx_agent_progress(&sim, "x", 1, buf, sizeof buf), 0);
}

static void test_sim_command_carries_role_and_rates(void **state) {
    nx_agent_conf_t conf = {.kind = NX_AGENT_SIM, .seed = 7, .reject_rate = 0.25, .subtasks = 3};
    nx_agent_cmd_t cmd;
    char err[512];
    assert_int_equal(nx_agent_command(&conf, "/x/nexus", "qa", "t", 1, &cmd, err, sizeof err), 0);
    assert_string_equal(cmd.argv[0], "/x/nexus");
    assert_string_equal(cmd.argv[1], "agent-sim");
    assert_true(has_arg(cmd.argv, "--role=qa"));
    assert_true(has_arg(cmd.argv, "--reject-rate=0.250000"));
    assert_true(has_arg(cmd.argv, "--subtasks=3"));
    nx_agent_cmd_clear(&cmd);
    /* The exponential work time has the configured mean. */
    double sum = 0;
    for (int i = 0; i < 4000; i++) {
        char in[16];
        int n = snprintf(in, sizeof in, "%d", i);
        sum += (double)nx_agent_sim_work_ms(1, 100, 0, true, in, (size_t)n, 1);
    }
    assert_true(sum / 4000 > 90 && sum / 4000 < 110);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_claude_command),
        cmocka_unit_test(test_claude_output),
        cmocka_unit_test(test_claude_stream_without_result_is_an_error),
        cmocka_unit_test(test_codex_command_and_output),
        cmocka_unit_test(test_gemini_command_and_output),
        cmocka_unit_test(test_copilot_and_aider),
        cmocka_unit_test(test_prompt_too_large_for_an_argument),
        cmocka_unit_test(test_exec_input_template),
        cmocka_unit_test(test_structured_tail),
        cmocka_unit_test(test_progress_lines),
        cmocka_unit_test(test_sim_command_carries_role_and_rates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
