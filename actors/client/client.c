/*  client.c - request/reply over a DEALER. Replies that do not match the
 *  request being waited for (late answers to an earlier call) are dropped. */
#define _GNU_SOURCE
#include <errno.h>
#include <sys/stat.h>

#include "nx_client.h"

struct nx_client {
    zsock_t *dealer;     /* to the CEO */
    char endpoint[600];  /* as given */
};

int nx_client_new(const char *endpoint, nx_client_t **ret_client) {
    if (strncmp(endpoint, "ipc://", 6) == 0) {
        struct stat st;
        if (stat(endpoint + 6, &st) < 0)
            return NX_EUNREACH;
    }
    nx_client_t *self = calloc(1, sizeof *self);
    if (!self)
        return -ENOMEM;
    snprintf(self->endpoint, sizeof self->endpoint, "%s", endpoint);
    self->dealer = zsock_new(ZMQ_DEALER);
    if (!self->dealer) {
        free(self);
        return -ENOMEM;
    }
    zsock_set_linger(self->dealer, 1000);
    zsock_set_sndhwm(self->dealer, 0);
    zsock_set_rcvhwm(self->dealer, 0);
    if (zsock_connect(self->dealer, "%s", endpoint) < 0) {
        zsock_destroy(&self->dealer);
        free(self);
        return NX_EUSAGE;
    }
    *ret_client = self;
    return 0;
}

void nx_client_destroy(nx_client_t **self_p) {
    if (!self_p || !*self_p)
        return;
    zsock_destroy(&(*self_p)->dealer);
    free(*self_p);
    *self_p = NULL;
}

const char *nx_client_endpoint(const nx_client_t *self) { return self->endpoint; }

int64_t nx_client_send(nx_client_t *self, nx_msg_t *msg) {
    uint64_t id = nx_wire_next_id();
    nx_msg_set_id(msg, id);
    nx_msg_set_from(msg, "cli");
    int rc = nx_wire_send(self->dealer, NULL, msg, false);
    return rc < 0 ? rc : (int64_t)id;
}

int nx_client_recv(nx_client_t *self, int64_t timeout_ms, nx_msg_t **ret_msg) {
    int64_t deadline = nx_mono_ms() + timeout_ms;
    for (;;) {
        int64_t left = deadline - nx_mono_ms();
        if (left < 0)
            return NX_EUNREACH;
        zmq_pollitem_t item = {zsock_resolve(self->dealer), 0, ZMQ_POLLIN, 0};
        int n = zmq_poll(&item, 1, (long)left);
        if (n < 0) {
            if (zmq_errno() == EINTR)
                return -EINTR;
            return -zmq_errno();
        }
        if (n == 0)
            return NX_EUNREACH;
        char err[256];
        int rc = nx_wire_recv(self->dealer, false, NULL, ret_msg, NULL, err, sizeof err);
        if (rc == -EAGAIN)
            continue;
        return rc;
    }
}

int nx_client_recv_reply(nx_client_t *self, int64_t id, int64_t timeout_ms, nx_msg_t **ret_msg) {
    int64_t deadline = nx_mono_ms() + timeout_ms;
    for (;;) {
        nx_msg_t *m = NULL;
        int rc = nx_client_recv(self, deadline - nx_mono_ms(), &m);
        if (rc < 0)
            return rc;
        if (nx_msg_corr(m) != (uint64_t)id) {
            nx_msg_destroy(&m);
            continue;
        }
        *ret_msg = m;
        return nx_msg_type(m) == NX_MSG_ERROR ? NX_EREMOTE : 0;
    }
}

int nx_client_call(nx_client_t *self, nx_msg_t *req, int64_t timeout_ms, nx_msg_t **ret_reply) {
    int64_t id = nx_client_send(self, req);
    if (id < 0)
        return (int)id;
    return nx_client_recv_reply(self, id, timeout_ms, ret_reply);
}
