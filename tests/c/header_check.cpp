// Compiles include/ferrows.h as C++ (run.sh: -std=c++17 -Wall -Wextra -Wpedantic -Werror),
// twice in one translation unit, and checks that its declarations have C linkage.
#include "ferrows.h"
#include "ferrows.h"

#include <type_traits>

static_assert(std::is_same<std::underlying_type<ferrows_result>::type, int32_t>::value,
              "ferrows_result is an int32_t enum");
static_assert(std::is_same<std::underlying_type<ferrows_event_kind>::type, uint32_t>::value,
              "ferrows_event_kind is a uint32_t enum");
static_assert(FERROWS_ERR_STATE == -13, "stable result numbers");

extern "C" {
// Redeclaring with C linkage compiles only if the header declared it with C linkage too.
const char *ferrows_version(void);
}

int header_check_cpp();
int header_check_cpp() {
    ferrows_result result = FERROWS_OK;
    ferrows_event_callback callback = {nullptr, nullptr, nullptr};
    ferrows_queue *queue = nullptr;
    (void)callback;
    (void)queue;
    return static_cast<int>(result) + FERROWS_VERSION_NUMBER;
}
