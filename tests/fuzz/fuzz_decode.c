/*  fuzz_decode - libFuzzer target for the message decoder: any bytes must
 *  either decode (and then encode again) or be rejected; never crash, leak
 *  or read out of bounds. Build with `make fuzz` (clang). */
#include <stdint.h>
#include <stdlib.h>

#include "nx_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    nx_msg_t *m = NULL;
    char err[256];
    uint64_t id;
    if (nx_msg_decode(data, size, &m, &id, err, sizeof err) == 0) {
        void *buf;
        size_t len;
        if (nx_msg_encode(m, &buf, &len) == 0)
            free(buf);
    }
    nx_msg_destroy(&m);
    return 0;
}
