/*  chat.c - agents talking to each other through the CEO.
 *
 *  An agent writes lines on its message channel (proto/PROTOCOL.md, "Agent
 *  messages"); its employee turns each into a CHAT to the CEO, which
 *
 *    send     delivers to employee:NAME, dept:NAME (one member, round robin)
 *             or all:NAME (every member), and says ok to the sender
 *    ask      delivers to one recipient as a question with a qid; the
 *             answer goes back to the asker as a reply, or an error when
 *             none comes within ceo.ask_timeout
 *    answer   routes an answer to the question's asker
 *    publish  puts the text on the event bus as topic agent.NAME
 *
 *  A message is delivered as soon as it is routed, before the commit that
 *  records it; the sender's ok waits for that commit. So a CEO crash can
 *  lose the record of a message that was delivered (never a task, and
 *  never an acknowledged message).
 *
 *  Only agents that are running can receive: a recipient with no running
 *  task is an error back to the sender, never a silent drop. One sender's
 *  messages to one receiver keep their order (one DEALER each way, and the
 *  CEO handles messages in arrival order). Every message is an event in
 *  the ledger with the sender's task, and one with the receiver's, so
 *  `nexus events --task ID` tells both sides. */
#define _GNU_SOURCE
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ceo_int.h"

#define MAX_QUESTIONS 10000

/* Sends a CHAT of `kind` to employee e. */
static void chat_to(ceo_t *self, emp_t *e, const char *kind, const char *ref, int64_t task,
                    uint64_t qid, const char *sender, const char *text) {
    nx_msg_t *r = nx_msg_new(NX_MSG_CHAT);
    nx_msg_set_str(r, "kind", kind);
    if (ref)
        nx_msg_set_str(r, "ref", ref);
    if (task)
        nx_msg_set_uint(r, "task", (uint64_t)task);
    if (qid)
        nx_msg_set_uint(r, "qid", qid);
    if (sender)
        nx_msg_set_str(r, "sender", sender);
    if (text)
        nx_msg_set_str(r, "text", text);
    nx_msg_set_to(r, e->name);
    /* What goes to the other agent leaves at once; what answers the sender
     * (ok, error) waits for the commit that records the message, like
     * every acknowledgement. */
    if (!strcmp(kind, "msg") || !strcmp(kind, "question") || !strcmp(kind, "reply"))
        ceo_send_now(self, e->identity, &r);
    else
        ceo_reply(self, e->identity, &r);
}

static bool running_agent(const emp_t *e) { return e->state == EMP_ALIVE && e->nheld > 0; }

/* Resolves "employee:NAME", "dept:NAME" or "all:NAME" into targets (at
 * most cap). Returns the count, or -1 with the cause in why. */
static int resolve(ceo_t *self, const char *to, const emp_t *sender, emp_t **out, size_t cap,
                   char *why, size_t whylen) {
    const char *colon = to ? strchr(to, ':') : NULL;
    if (!colon) {
        snprintf(why, whylen, "recipient '%s' is not employee:NAME, dept:NAME or all:NAME",
                 to ? to : "");
        return -1;
    }
    size_t kl = (size_t)(colon - to);
    const char *name = colon + 1;
    if (kl == 8 && !strncmp(to, "employee", 8)) {
        emp_t *e = zhashx_lookup(self->emps, name);
        if (!e) {
            snprintf(why, whylen, "no employee '%s'", name);
            return -1;
        }
        if (!running_agent(e)) {
            snprintf(why, whylen, "employee '%s' is not running an agent now", name);
            return -1;
        }
        out[0] = e;
        return 1;
    }
    bool all = kl == 3 && !strncmp(to, "all", 3);
    if (!all && !(kl == 4 && !strncmp(to, "dept", 4))) {
        snprintf(why, whylen, "recipient '%s' is not employee:NAME, dept:NAME or all:NAME", to);
        return -1;
    }
    int d = nx_company_dept(self->company, name);
    if (d < 0) {
        snprintf(why, whylen, "no department '%s'", name);
        return -1;
    }
    dept_q_t *q = &self->queues[d];
    size_t n = 0;
    for (size_t k = 0; k < q->nemps && n < cap; k++) {
        emp_t *e = q->emps[(self->chat_rr + k) % q->nemps];
        if (running_agent(e) && e != sender) {
            out[n++] = e;
            if (!all)
                break;
        }
    }
    self->chat_rr++;
    if (n == 0) {
        snprintf(why, whylen, "no agent of department '%s' is running now", name);
        return -1;
    }
    return (int)n;
}

static void record(ceo_t *self, const char *topic, int64_t task, const emp_t *e, const char *fmt,
                   ...) __attribute__((format(printf, 5, 6)));
static void record(ceo_t *self, const char *topic, int64_t task, const emp_t *e, const char *fmt,
                   ...) {
    char detail[1200];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(detail, sizeof detail, fmt, ap);
    va_end(ap);
    nx_utf8_sanitize(detail); /* a cut may have split a character */
    ceo_event(self, topic, task, e ? e->name : NULL,
              e ? self->company->depts[e->dept].name : NULL, NULL, detail);
}

static question_t *find_question(ceo_t *self, uint64_t qid) {
    for (size_t i = 0; i < self->nquestions; i++)
        if (self->questions[i].qid == qid)
            return &self->questions[i];
    return NULL;
}

void chat_on_message(ceo_t *self, emp_t *e, const nx_msg_t *m) {
    const char *kind = nx_msg_str(m, "kind"), *ref = nx_msg_str(m, "ref");
    const char *to = nx_msg_str(m, "to"), *text = nx_msg_str(m, "text");
    int64_t task = (int64_t)nx_msg_uint(m, "task", 0);
    if (!text)
        text = "";
    char why[300];
    emp_t *targets[256];
    if (!strcmp(kind, "send") || !strcmp(kind, "ask")) {
        bool ask = kind[0] == 'a';
        int n = resolve(self, to, e, targets, ask ? 1 : 256, why, sizeof why);
        if (n > 0 && ask && to && !strncmp(to, "all:", 4)) {
            snprintf(why, sizeof why, "ask one recipient (employee:NAME or dept:NAME), not all:");
            n = -1;
        }
        if (n > 0 && ask && self->nquestions >= MAX_QUESTIONS) {
            snprintf(why, sizeof why, "too many open questions (%d)", MAX_QUESTIONS);
            n = -1;
        }
        if (n < 0) {
            record(self, "message.undeliverable", task, e, "%s to %s: %s", kind, to ? to : "", why);
            chat_to(self, e, "error", ref, task, 0, NULL, why);
            return;
        }
        uint64_t qid = 0;
        if (ask) {
            if (self->nquestions == self->questions_cap) {
                self->questions_cap = self->questions_cap ? self->questions_cap * 2 : 16;
                self->questions =
                    realloc(self->questions, self->questions_cap * sizeof *self->questions);
            }
            question_t *q = &self->questions[self->nquestions++];
            memset(q, 0, sizeof *q);
            q->qid = qid = ++self->next_qid;
            snprintf(q->asker, sizeof q->asker, "%s", e->name);
            snprintf(q->target, sizeof q->target, "%s", targets[0]->name);
            snprintf(q->ref, sizeof q->ref, "%s", ref ? ref : "-");
            q->task = task;
            q->deadline_ms = nx_mono_ms() + self->company->ask_timeout_ms;
        }
        for (int i = 0; i < n; i++) {
            chat_to(self, targets[i], ask ? "question" : "msg", NULL, 0, qid, e->name, text);
            record(self, ask ? "message.asked" : "message.sent", task, e, "to %s: %s",
                   targets[i]->name, text);
            record(self, "message.received", targets[i]->held[0].task, targets[i], "from %s: %s",
                   e->name, text);
        }
        if (!ask)
            chat_to(self, e, "ok", ref, task, 0, NULL, NULL);
    } else if (!strcmp(kind, "answer")) {
        uint64_t qid = nx_msg_uint(m, "qid", 0);
        question_t *q = find_question(self, qid);
        if (!q || strcmp(q->target, e->name) != 0) {
            snprintf(why, sizeof why, "no open question %llu for this agent",
                     (unsigned long long)qid);
            chat_to(self, e, "error", ref, task, 0, NULL, why);
            return;
        }
        emp_t *asker = zhashx_lookup(self->emps, q->asker);
        record(self, "message.answered", q->task, e, "to %s: %s", q->asker, text);
        if (asker && asker->state == EMP_ALIVE)
            chat_to(self, asker, "reply", q->ref, q->task, 0, e->name, text);
        *q = self->questions[--self->nquestions];
    } else if (!strcmp(kind, "publish")) {
        if (!to || !nx_name_ok(to)) {
            snprintf(why, sizeof why, "topic '%s' must be 1-64 of a-z 0-9 . _ -", to ? to : "");
            chat_to(self, e, "error", ref, task, 0, NULL, why);
            return;
        }
        char topic[80];
        snprintf(topic, sizeof topic, "agent.%s", to);
        record(self, topic, task, e, "%s", text);
        chat_to(self, e, "ok", ref, task, 0, NULL, NULL);
    } else {
        snprintf(why, sizeof why, "unknown chat kind '%s'", kind);
        chat_to(self, e, "error", ref, task, 0, NULL, why);
    }
}

void chat_tick(ceo_t *self) {
    int64_t now = nx_mono_ms();
    for (size_t i = 0; i < self->nquestions;) {
        question_t *q = &self->questions[i];
        if (now < q->deadline_ms) {
            i++;
            continue;
        }
        emp_t *asker = zhashx_lookup(self->emps, q->asker);
        char why[200];
        snprintf(why, sizeof why, "no answer from %s within %lld ms", q->target,
                 (long long)self->company->ask_timeout_ms);
        if (asker && asker->state == EMP_ALIVE)
            chat_to(self, asker, "error", q->ref, q->task, 0, NULL, why);
        record(self, "message.timeout", q->task, asker, "%s", why);
        *q = self->questions[--self->nquestions];
    }
}
