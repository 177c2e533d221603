/*  sim_main.c - the simulated agent, `nexus agent-sim` (its adapter is
 *  sim.c).
 *
 *  The sim agent is a real process that reads stdin and writes stdout like
 *  any agent CLI, so it exercises the same pipes, limits and failure paths
 *  as a real one, without a network or a model. It uses nx_base alone, so
 *  the `nexus` launcher runs it without loading libnexus-core. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
#include <math.h>
#include <spawn.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "nx_agents.h"

/* FNV-1a, then a splitmix64 finaliser: cheap and well spread. */
static uint64_t mix(uint64_t seed, const void *data, size_t len, uint64_t salt) {
    uint64_t h = 1469598103934665603ULL ^ seed;
    const unsigned char *p = data;
    for (size_t i = 0; i < len; i++)
        h = (h ^ p[i]) * 1099511628211ULL;
    h ^= salt + 0x9e3779b97f4a7c15ULL;
    h = (h ^ (h >> 30)) * 0xbf58476d1ce4e5b9ULL;
    h = (h ^ (h >> 27)) * 0x94d049bb133111ebULL;
    return h ^ (h >> 31);
}

/* A uniform draw in [0, 1) for one decision. */
static double draw(uint64_t seed, const void *input, size_t len, uint64_t salt) {
    return (double)(mix(seed, input, len, salt) >> 11) / 9007199254740992.0;
}

int nx_agent_sim_fails(uint64_t seed, const void *input, size_t len, uint32_t attempt,
                       double fail_rate) {
    return draw(seed, input, len, attempt) < fail_rate;
}

int64_t nx_agent_sim_work_ms(uint64_t seed, int64_t work_ms, int64_t jitter_ms, bool exponential,
                             const void *input, size_t len, uint32_t attempt) {
    if (exponential) {
        /* Long tails, as real agents have: a few tasks take many times the mean. */
        double u = draw(seed, input, len, 0xe4b0 + attempt);
        return (int64_t)(-log(1.0 - u) * (double)work_ms);
    }
    if (jitter_ms > 0) {
        int64_t span = 2 * jitter_ms + 1;
        work_ms += (int64_t)(mix(seed, input, len, 0x5eed + attempt) % (uint64_t)span) - jitter_ms;
    }
    return work_ms > 0 ? work_ms : 0;
}

static void sleep_ms(int64_t ms) {
    if (ms <= 0)
        return;
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000};
    while (nanosleep(&ts, &ts) < 0 && errno == EINTR)
        ;
}

static int write_all(int fd, const void *buf, size_t len) {
    const char *p = buf;
    while (len) {
        ssize_t w = write(fd, p, len);
        if (w < 0) {
            if (errno == EINTR)
                continue;
            return -1;
        }
        p += w;
        len -= (size_t)w;
    }
    return 0;
}

/* Runs the '!' directives; returns -1 to go on, or an exit code. */
static int run_directives(const char *input) {
    for (const char *line = input; line && *line; line = strchr(line, '\n') ? strchr(line, '\n') + 1 : NULL) {
        if (line[0] != '!')
            continue;
        long long arg = 0;
        if (sscanf(line, "!exit %lld", &arg) == 1)
            return (int)(arg & 255);
        if (strncmp(line, "!crash", 6) == 0) {
            signal(SIGABRT, SIG_DFL);
            abort();
        }
        if (sscanf(line, "!sleep %lld", &arg) == 1)
            sleep_ms(arg);
        else if (sscanf(line, "!flood %lld", &arg) == 1) {
            static char block[65536];
            memset(block, 'x', sizeof block);
            for (long long done = 0; done < arg; done += (long long)sizeof block)
                if (write_all(1, block, sizeof block) < 0)
                    return 141;
        } else if (strncmp(line, "!stderr ", 8) == 0) {
            const char *end = strchr(line, '\n');
            size_t n = end ? (size_t)(end - line - 8) : strlen(line + 8);
            write_all(2, line + 8, n);
            write_all(2, "\n", 1);
        }
    }
    return -1;
}

/* Writes s as a JSON string body (without quotes). */
static void json_escape(FILE *f, const char *s, size_t len) {
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c == '"' || c == '\\')
            fprintf(f, "\\%c", c);
        else if (c == '\n')
            fputs("\\n", f);
        else if (c < 0x20)
            fprintf(f, "\\u%04x", c);
        else
            fputc(c, f);
    }
}

/* The first line of the input, at most 60 bytes: what a plan names. */
static size_t headline(const char *input, size_t len) {
    size_t n = 0;
    while (n < len && n < 60 && input[n] != '\n')
        n++;
    while (n > 0 && n < len && ((unsigned char)input[n] & 0xc0) == 0x80)
        n--; /* not in the middle of a UTF-8 character */
    return n;
}

/* Runs git with args in the current folder; returns its exit status. */
static int git(char *const args[]) {
    extern char **environ;
    pid_t pid;
    if (posix_spawnp(&pid, "git", NULL, NULL, args, environ) != 0)
        return -1;
    int st;
    if (waitpid(pid, &st, 0) < 0)
        return -1;
    return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

/* Engineering at work: when the folder is a git worktree, a file with the
 * work, committed. Returns 0, or an exit code. */
static int commit_work(const char *input, size_t len, uint32_t attempt) {
    struct stat st;
    if (stat(".git", &st) < 0)
        return 0; /* not a repository: nothing to commit */
    const char *task = getenv("NEXUS_TASK_ID");
    char name[128];
    snprintf(name, sizeof name, "work/task-%s-attempt-%u.md", task ? task : "0", attempt);
    mkdir("work", 0755);
    FILE *f = fopen(name, "w");
    if (!f)
        return 73;
    fprintf(f, "# Work for task %s\n\n", task ? task : "?");
    fwrite(input, 1, len, f);
    fputc('\n', f);
    if (fclose(f) != 0)
        return 74;
    char msg[160];
    snprintf(msg, sizeof msg, "task %s: %.*s", task ? task : "?", (int)headline(input, len), input);
    char *add[] = {"git", "add", name, NULL};
    char *commit[] = {"git", "-c", "user.name=Nexus sim", "-c", "user.email=sim@nexus.invalid",
                      "commit", "-q", "-m", msg, "--", name, NULL};
    /* Subtasks of one task share its worktree and run at once: another
     * agent's git may hold the index lock for a moment, so try again; and
     * commit only our file, whatever else is staged. */
    for (int i = 0; i < 40; i++) {
        if (git(add) == 0 && git(commit) == 0)
            return 0;
        sleep_ms(25 + (int64_t)(mix(i, name, strlen(name), attempt) % 50));
    }
    fprintf(stderr, "sim: git could not commit %s\n", name);
    return 75;
}

int nx_agent_sim_main(int argc, char **argv) {
    uint64_t seed = 1;
    int64_t work = 0, jitter = 0;
    double fail_rate = 0, crash_rate = 0, reject_rate = 0;
    unsigned subtasks = 0;
    bool exponential = false;
    const char *prefix = "done: ", *role = "";
    static const struct option opts[] = {{"seed", required_argument, 0, 's'},
                                         {"work", required_argument, 0, 'w'},
                                         {"jitter", required_argument, 0, 'j'},
                                         {"exponential", no_argument, 0, 'e'},
                                         {"fail-rate", required_argument, 0, 'f'},
                                         {"crash-rate", required_argument, 0, 'c'},
                                         {"reject-rate", required_argument, 0, 'r'},
                                         {"subtasks", required_argument, 0, 'n'},
                                         {"role", required_argument, 0, 'R'},
                                         {"output", required_argument, 0, 'o'},
                                         {0, 0, 0, 0}};
    int c;
    optind = 1;
    while ((c = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (c) {
        case 's': seed = strtoull(optarg, NULL, 10); break;
        case 'w':
            if (nx_parse_duration(optarg, &work) < 0)
                goto usage;
            break;
        case 'j':
            if (nx_parse_duration(optarg, &jitter) < 0)
                goto usage;
            break;
        case 'f': fail_rate = strtod(optarg, NULL); break;
        case 'c': crash_rate = strtod(optarg, NULL); break;
        case 'r': reject_rate = strtod(optarg, NULL); break;
        case 'n': subtasks = (unsigned)strtoul(optarg, NULL, 10); break;
        case 'e': exponential = true; break;
        case 'R': role = optarg; break;
        case 'o': prefix = optarg; break;
        default: goto usage;
        }
    }
    size_t cap = 4096, len = 0;
    char *input = malloc(cap);
    if (!input)
        return 70;
    for (;;) {
        if (len + 1 >= cap) {
            char *bigger = realloc(input, cap *= 2);
            if (!bigger) {
                free(input);
                return 70;
            }
            input = bigger;
        }
        ssize_t r = read(0, input + len, cap - len - 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r <= 0)
            break;
        len += (size_t)r;
    }
    input[len] = '\0';
    const char *att = getenv("NEXUS_ATTEMPT");
    uint32_t attempt = att ? (uint32_t)strtoul(att, NULL, 10) : 1;
    int rc = run_directives(input);
    if (rc >= 0) {
        free(input);
        return rc;
    }
    sleep_ms(nx_agent_sim_work_ms(seed, work, jitter, exponential, input, len, attempt));
    if (draw(seed, input, len, 0xc4a5 + attempt) < crash_rate) {
        signal(SIGSEGV, SIG_DFL);
        raise(SIGSEGV); /* a simulated crash, as a real one looks */
    }
    if (nx_agent_sim_fails(seed, input, len, attempt, fail_rate)) {
        fprintf(stderr, "sim: simulated failure (seed %llu, attempt %u)\n",
                (unsigned long long)seed, attempt);
        free(input);
        return 1;
    }
    rc = 0;
    if (!strcmp(role, "product") && subtasks > 0) {
        /* A plan: the work split into parts, as JSON the CEO reads. */
        size_t h = headline(input, len);
        printf("{\"plan\": \"");
        json_escape(stdout, input, h);
        printf("\", \"subtasks\": [");
        for (unsigned i = 0; i < subtasks; i++) {
            printf("%s\"part %u of %u: ", i ? ", " : "", i + 1, subtasks);
            json_escape(stdout, input, h);
            printf("\"");
        }
        printf("]}\n");
    } else if (!strcmp(role, "qa")) {
        bool reject = draw(seed, input, len, 0x9a + attempt) < reject_rate;
        printf("{\"verdict\": \"%s\", \"findings\": \"%s\"}\n", reject ? "reject" : "accept",
               reject ? "the change lacks a test for the empty input" : "tests pass");
    } else {
        if (!strcmp(role, "engineering"))
            rc = commit_work(input, len, attempt);
        if (rc == 0)
            rc = write_all(1, prefix, strlen(prefix)) < 0 || write_all(1, input, len) < 0 ? 74 : 0;
    }
    if (fflush(stdout) != 0)
        rc = 74;
    free(input);
    return rc;
usage:
    fprintf(stderr, "nexus agent-sim: bad arguments (see nx_agents.h)\n");
    return 64;
}
