/*  nx_client - the client side of the CEO protocol, used by the CLI (and
 *  later the MCP server): a DEALER, request/reply with correlation ids, and
 *  streamed replies that end with END. */
#ifndef NX_CLIENT_H
#define NX_CLIENT_H

#include "nx_runtime.h"

typedef struct nx_client nx_client_t;

/* Connects to the CEO at endpoint. For an ipc endpoint whose socket file
 * does not exist, fails at once with NX_EUNREACH instead of waiting. */
int nx_client_new(const char *endpoint, nx_client_t **ret_client);
void nx_client_destroy(nx_client_t **self_p);

/* Sends msg (still the caller's) with a fresh id; returns the id (> 0) or
 * a negative error. */
int64_t nx_client_send(nx_client_t *self, nx_msg_t *msg);

/* Waits up to timeout_ms for the next message. Returns 0, NX_EUNREACH on
 * timeout (the CEO did not answer), or a decode error. */
int nx_client_recv(nx_client_t *self, int64_t timeout_ms, nx_msg_t **ret_msg);

/* Waits for the next message whose corr is `id` (a streamed reply to one
 * request), dropping others. An ERROR comes back in *ret_msg with
 * NX_EREMOTE; a timeout is NX_EUNREACH. */
int nx_client_recv_reply(nx_client_t *self, int64_t id, int64_t timeout_ms, nx_msg_t **ret_msg);

/* Sends req and waits for the reply whose corr is its id. An ERROR reply is
 * returned in *ret_reply too, with NX_EREMOTE. */
int nx_client_call(nx_client_t *self, nx_msg_t *req, int64_t timeout_ms, nx_msg_t **ret_reply);

/* The endpoint this client talks to. */
const char *nx_client_endpoint(const nx_client_t *self);

#endif
