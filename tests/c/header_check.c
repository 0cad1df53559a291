/* Compiles include/ferrows.h alone, twice in one translation unit (its include guard), as
 * strict C (run.sh: -std=c99 ... -Wpedantic -Werror) and as C++ (header_check.cpp). */
#include "ferrows.h"
#include "ferrows.h"

/* Every type and constant is usable from C. */
static const int32_t results[] = {FERROWS_OK, FERROWS_AGAIN, FERROWS_ERR_STATE};
static const uint32_t kinds[] = {FERROWS_EVENT_OPEN, FERROWS_EVENT_ACCEPT, FERROWS_MESSAGE_TEXT,
                                 FERROWS_MESSAGE_BINARY};

int header_check(void);
int header_check(void) {
    ferrows_result result = FERROWS_OK;
    ferrows_message_type type = FERROWS_MESSAGE_TEXT;
    ferrows_event_kind kind = FERROWS_EVENT_CLOSED;
    ferrows_event_callback callback = {0, 0, 0};
    ferrows_config *config = 0;
    ferrows_conn *conn = 0;
    ferrows_event *event = 0;
    ferrows_queue *queue = 0;
    ferrows_server *server = 0;
    const char *(*version)(void) = ferrows_version;
    (void)callback;
    (void)config;
    (void)conn;
    (void)event;
    (void)queue;
    (void)server;
    (void)version;
    return (int)result + (int)type + (int)kind + FERROWS_VERSION_NUMBER + FERROWS_ABI_VERSION +
           (int)(sizeof results + sizeof kinds);
}
