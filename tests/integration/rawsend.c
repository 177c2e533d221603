/*  rawsend - test helper: sends the bytes on stdin as one frame to a
 *  ROUTER endpoint (with --frames N, as N copies split into N frames) and
 *  prints the reply's type, code and message, or "no reply".
 *  Usage: nx_rawsend ENDPOINT [TIMEOUT_MS] */
#include <stdio.h>
#include <stdlib.h>

#include "nx_runtime.h"

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: nx_rawsend ENDPOINT [TIMEOUT_MS]\n");
        return 2;
    }
    int timeout = argc > 2 ? atoi(argv[2]) : 2000;
    static char buf[1 << 20];
    size_t len = fread(buf, 1, sizeof buf, stdin);
    zsock_t *d = zsock_new(ZMQ_DEALER);
    zsock_set_linger(d, 0);
    if (zsock_connect(d, "%s", argv[1]) < 0)
        return 2;
    zmq_send(zsock_resolve(d), buf, len, 0);
    zmq_pollitem_t item = {zsock_resolve(d), 0, ZMQ_POLLIN, 0};
    if (zmq_poll(&item, 1, timeout) <= 0) {
        puts("no reply");
        zsock_destroy(&d);
        return 1;
    }
    nx_msg_t *m = NULL;
    char err[256];
    int rc = nx_wire_recv(d, false, NULL, &m, NULL, err, sizeof err);
    if (rc < 0)
        printf("undecodable reply: %s\n", err);
    else {
        printf("%s %s %s\n", nx_msg_type_name(nx_msg_type(m)),
               nx_msg_str(m, "code") ? nx_msg_str(m, "code") : "-",
               nx_msg_str(m, "message") ? nx_msg_str(m, "message") : "-");
        nx_msg_destroy(&m);
    }
    zsock_destroy(&d);
    return 0;
}
