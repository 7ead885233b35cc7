// An LD_PRELOAD library for the memory-exhaustion tests (test_faults.py builds it): once the file
// named by EGRESSGATE_FAULT_ALLOC_FILE exists, the next allocation made on one of the proxy's
// worker threads (named eg-worker-N) fails, as it would with the address space used up, and the
// file is removed: one failure per file. Other threads and frees are untouched. Test code only:
// two system calls per allocation.
//
// One failure at a time, not every allocation for a while: Asio 1.74's coroutines abort the
// process when the memory for an operation they wait on cannot be had (the coroutine's unwinding
// needs memory too), so a longer famine would test Asio, not the proxy.
#define _GNU_SOURCE
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <unistd.h>

// glibc's own entry points, which this library's definitions hide from the program.
extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t count, size_t size);
extern void* __libc_realloc(void* old, size_t size);
extern void* __libc_memalign(size_t alignment, size_t size);

static const char* trigger_path;

__attribute__((constructor)) static void read_trigger(void) { trigger_path = getenv("EGRESSGATE_FAULT_ALLOC_FILE"); }

static int on_worker_thread(void) {
    char name[16] = {0};
    return prctl(PR_GET_NAME, name) == 0 && strncmp(name, "eg-worker-", 10) == 0;
}

// errno is ENOMEM when this says fail, as glibc leaves it, and as it was otherwise. Of two workers
// that find the file at once, the one whose unlink succeeds fails.
static int must_fail(void) {
    if (trigger_path == NULL) return 0;
    const int saved = errno;
    const int fail = on_worker_thread() && unlink(trigger_path) == 0;
    errno = fail ? ENOMEM : saved;
    return fail;
}

void* malloc(size_t size) { return must_fail() ? NULL : __libc_malloc(size); }

void* calloc(size_t count, size_t size) { return must_fail() ? NULL : __libc_calloc(count, size); }

void* realloc(void* old, size_t size) { return must_fail() ? NULL : __libc_realloc(old, size); }

void* memalign(size_t alignment, size_t size) { return must_fail() ? NULL : __libc_memalign(alignment, size); }

void* aligned_alloc(size_t alignment, size_t size) { return memalign(alignment, size); }

int posix_memalign(void** out, size_t alignment, size_t size) {
    if (must_fail()) return ENOMEM;
    void* p = __libc_memalign(alignment, size);
    if (p == NULL) return ENOMEM;
    *out = p;
    return 0;
}
