// An LD_PRELOAD library for the memory-exhaustion tests (test_faults.py builds it): once the file
// named by EGRESSGATE_FAULT_ALLOC_FILE exists, the next connection one of the proxy's worker
// threads (named eg-worker-N) accepts takes the file away, and the first allocation that thread
// makes after the accept fails, as it would with the address space used up. Other threads,
// other allocations and frees are untouched.
//
// One failure, placed on the accept path, rather than every allocation for a while: in Asio 1.74
// an operation a coroutine starts is allocated inside a noexcept await_suspend, so a failure
// there ends the process however the proxy is written, and a famine would test Asio.
#define _GNU_SOURCE
#include <dlfcn.h>
#include <errno.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

// glibc's own entry points, which this library's definitions hide from the program.
extern void* __libc_malloc(size_t size);
extern void* __libc_calloc(size_t count, size_t size);
extern void* __libc_realloc(void* old, size_t size);
extern void* __libc_memalign(size_t alignment, size_t size);

static const char* trigger_path;
static int (*real_accept4)(int, struct sockaddr*, socklen_t*, int);
// Set by an armed accept on this thread, cleared by the allocation it fails.
static __thread int fail_next __attribute__((tls_model("initial-exec")));

__attribute__((constructor)) static void set_up(void) {
    trigger_path = getenv("EGRESSGATE_FAULT_ALLOC_FILE");
    real_accept4 = (int (*)(int, struct sockaddr*, socklen_t*, int))dlsym(RTLD_NEXT, "accept4");
}

static int on_worker_thread(void) {
    char name[16] = {0};
    return prctl(PR_GET_NAME, name) == 0 && strncmp(name, "eg-worker-", 10) == 0;
}

// Of two workers that accept at once, the one whose unlink succeeds is armed. errno is as the
// accept left it.
int accept4(int listener, struct sockaddr* peer, socklen_t* length, int flags) {
    const int fd = real_accept4(listener, peer, length, flags);
    if (fd >= 0 && trigger_path != NULL) {
        const int saved = errno;
        if (on_worker_thread() && unlink(trigger_path) == 0) fail_next = 1;
        errno = saved;
    }
    return fd;
}

static int must_fail(void) {
    if (!fail_next) return 0;
    fail_next = 0;
    errno = ENOMEM;
    return 1;
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
