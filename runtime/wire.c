/*  wire.c - nx_msg_t over czmq sockets.
 *
 *  The codec lives in proto/; this file only frames: a ROUTER peer's
 *  identity frame, then exactly one msgpack frame. Anything else on the
 *  wire (extra frames, a missing body frame) is reported as NX_EBADMSG. */
#define _GNU_SOURCE
#include <errno.h>
#include <stdatomic.h>
#include <stdlib.h>

#include "nx_runtime.h"

static _Atomic uint64_t s_next_id = 1;

uint64_t nx_wire_next_id(void) { return atomic_fetch_add(&s_next_id, 1); }

int nx_wire_send(zsock_t *sock, zframe_t *identity, const nx_msg_t *msg, bool dontwait) {
    void *buf;
    size_t len;
    int rc = nx_msg_encode(msg, &buf, &len);
    if (rc < 0)
        return rc;
    void *raw = zsock_resolve(sock);
    int flags = dontwait ? ZMQ_DONTWAIT : 0;
    if (identity &&
        zmq_send(raw, zframe_data(identity), zframe_size(identity), flags | ZMQ_SNDMORE) < 0) {
        rc = -zmq_errno();
        free(buf);
        return rc;
    }
    rc = zmq_send(raw, buf, len, flags) < 0 ? -zmq_errno() : 0;
    free(buf);
    return rc;
}

int nx_wire_recv(zsock_t *sock, bool router, zframe_t **ret_identity, nx_msg_t **ret_msg,
                 uint64_t *ret_id, char *err, size_t errlen) {
    void *raw = zsock_resolve(sock);
    zmq_msg_t part;
    zframe_t *identity = NULL;
    int rc = 0;
    int more;
    size_t moresz = sizeof more;
    *ret_msg = NULL;
    if (ret_id)
        *ret_id = 0;
    if (router) {
        zmq_msg_init(&part);
        if (zmq_msg_recv(&part, raw, ZMQ_DONTWAIT) < 0) {
            rc = -zmq_errno();
            zmq_msg_close(&part);
            return rc;
        }
        identity = zframe_new(zmq_msg_data(&part), zmq_msg_size(&part));
        zmq_getsockopt(raw, ZMQ_RCVMORE, &more, &moresz);
        zmq_msg_close(&part);
        if (!more) {
            snprintf(err, errlen, "message has no body frame");
            rc = NX_EBADMSG;
            goto out;
        }
    }
    zmq_msg_init(&part);
    if (zmq_msg_recv(&part, raw, router ? 0 : ZMQ_DONTWAIT) < 0) {
        rc = -zmq_errno();
        zmq_msg_close(&part);
        goto out;
    }
    zmq_getsockopt(raw, ZMQ_RCVMORE, &more, &moresz);
    if (more) {
        /* Drain the rest so the next read starts at a message boundary. */
        while (more) {
            zmq_msg_t extra;
            zmq_msg_init(&extra);
            zmq_msg_recv(&extra, raw, 0);
            zmq_getsockopt(raw, ZMQ_RCVMORE, &more, &moresz);
            zmq_msg_close(&extra);
        }
        snprintf(err, errlen, "message has more than one body frame");
        rc = NX_EBADMSG;
    } else
        rc = nx_msg_decode(zmq_msg_data(&part), zmq_msg_size(&part), ret_msg, ret_id, err,
                           errlen);
    zmq_msg_close(&part);
out:
    if (ret_identity)
        *ret_identity = identity;
    else
        zframe_destroy(&identity);
    return rc;
}
