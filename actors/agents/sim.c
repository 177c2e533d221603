/*  sim.c - the simulated agent.
 *
 *  The sim agent is a real process that reads stdin and writes stdout like
 *  any agent CLI, so it exercises the same pipes, limits and failure paths
 *  as a real one, without a network or a model. It uses nx_base alone, so
 *  the `nexus` launcher runs it without loading libnexus-core. */
#define _GNU_SOURCE
#include <errno.h>
#include <getopt.h>
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

int nx_agent_sim_fails(uint64_t seed, const void *input, size_t len, uint32_t attempt,
                       double fail_rate) {
    double u = (double)(mix(seed, input, len, attempt) >> 11) / 9007199254740992.0;
    return u < fail_rate;
}

int64_t nx_agent_sim_work_ms(uint64_t seed, int64_t work_ms, int64_t jitter_ms, const void *input,
                             size_t len, uint32_t attempt) {
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

int nx_agent_sim_main(int argc, char **argv) {
    uint64_t seed = 1;
    int64_t work = 0, jitter = 0;
    double fail_rate = 0;
    const char *prefix = "done: ";
    static const struct option opts[] = {{"seed", required_argument, 0, 's'},
                                         {"work", required_argument, 0, 'w'},
                                         {"jitter", required_argument, 0, 'j'},
                                         {"fail-rate", required_argument, 0, 'f'},
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
    sleep_ms(nx_agent_sim_work_ms(seed, work, jitter, input, len, attempt));
    if (nx_agent_sim_fails(seed, input, len, attempt, fail_rate)) {
        fprintf(stderr, "sim: simulated failure (seed %llu, attempt %u)\n",
                (unsigned long long)seed, attempt);
        free(input);
        return 1;
    }
    rc = write_all(1, prefix, strlen(prefix)) < 0 || write_all(1, input, len) < 0 ? 74 : 0;
    free(input);
    return rc;
usage:
    fprintf(stderr, "nexus agent-sim: bad arguments (see nx_agents.h)\n");
    return 64;
}
