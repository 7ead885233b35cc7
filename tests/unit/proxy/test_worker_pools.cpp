// The per-worker pools (head buffers, request parsers): bounded, and giving back never allocates,
// since a session's destructor does it. The allocation switch below makes every operator new of
// this thread fail while it is on, as a worker out of memory would see it.
#include <catch.hpp>

#include <cstdlib>
#include <memory>
#include <new>
#include <vector>

#include "proxy/worker_context.hpp"

namespace {
thread_local bool allocations_fail = false;

void* allocate(std::size_t size) {
    if (allocations_fail) throw std::bad_alloc();
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}

// While alive, every allocation on this thread throws std::bad_alloc.
struct OutOfMemory {
    OutOfMemory() { allocations_fail = true; }
    ~OutOfMemory() { allocations_fail = false; }
    OutOfMemory(const OutOfMemory&) = delete;
    OutOfMemory& operator=(const OutOfMemory&) = delete;
};
}  // namespace

// Every form of the unaligned family, so that whatever one allocates the matching one frees
// (AddressSanitizer checks the pairs); the aligned forms stay the runtime's, a family of their own.
void* operator new(std::size_t size) { return allocate(size); }
void* operator new[](std::size_t size) { return allocate(size); }
void* operator new(std::size_t size, const std::nothrow_t&) noexcept {
    try {
        return allocate(size);
    } catch (const std::bad_alloc&) {
        return nullptr;
    }
}
void* operator new[](std::size_t size, const std::nothrow_t& tag) noexcept { return operator new(size, tag); }
void operator delete(void* p) noexcept { std::free(p); }
void operator delete[](void* p) noexcept { std::free(p); }
void operator delete(void* p, std::size_t) noexcept { std::free(p); }
void operator delete[](void* p, std::size_t) noexcept { std::free(p); }
void operator delete(void* p, const std::nothrow_t&) noexcept { std::free(p); }
void operator delete[](void* p, const std::nothrow_t&) noexcept { std::free(p); }

using egressgate::proxy::HeadBufferPool;
using egressgate::proxy::kMaxPooledHeadBuffers;

TEST_CASE("head buffers go back to the pool without allocating, up to its bound", "[proxy][pools]") {
    HeadBufferPool pool;
    std::vector<std::unique_ptr<char[]>> taken;
    for (std::size_t i = 0; i < kMaxPooledHeadBuffers + 2; ++i) taken.push_back(pool.take());
    // Every one goes back (or, past the bound, is let go) with no memory to be had: a session's
    // destructor gives its buffer back and must not throw. Catch itself may allocate, so the
    // checks come after the switch is off.
    bool give_threw = false;
    {
        const OutOfMemory no_memory;
        for (auto& buffer : taken) {
            try {
                pool.give(std::move(buffer));
            } catch (const std::bad_alloc&) {
                give_threw = true;
            }
        }
    }
    CHECK_FALSE(give_threw);
    // The pool holds its bound and no more: taking that many again allocates nothing, and the
    // next take, from an empty pool, needs memory.
    std::vector<std::unique_ptr<char[]>> again;
    again.reserve(kMaxPooledHeadBuffers);
    std::size_t taken_without_memory = 0;
    bool next_take_threw = false;
    {
        const OutOfMemory no_memory;
        try {
            for (std::size_t i = 0; i < kMaxPooledHeadBuffers; ++i) {
                again.push_back(pool.take());
                ++taken_without_memory;
            }
            static_cast<void>(pool.take());
        } catch (const std::bad_alloc&) {
            next_take_threw = taken_without_memory == kMaxPooledHeadBuffers;
        }
    }
    CHECK(taken_without_memory == kMaxPooledHeadBuffers);
    CHECK(next_take_threw);
}
