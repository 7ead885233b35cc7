// The per-worker pools (head buffers, request parsers): bounded, and giving back allocates
// nothing, since a session's destructor does it. The operator new below counts this thread's
// allocations, so that a test can say how many a step made.
#include <catch.hpp>

#include <cstdlib>
#include <memory>
#include <new>
#include <string>
#include <vector>

#include "http/message.hpp"
#include "proxy/worker_context.hpp"

namespace {
thread_local std::size_t allocations = 0;

void* allocate(std::size_t size) {
    ++allocations;
    if (void* p = std::malloc(size == 0 ? 1 : size)) return p;
    throw std::bad_alloc();
}

// How many allocations `step` made on this thread (no Catch assertion inside: Catch allocates).
template <typename Step>
std::size_t allocations_in(Step&& step) {
    const std::size_t before = allocations;
    step();
    return allocations - before;
}
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

using egressgate::http::MessageParser;
using egressgate::proxy::HeadBufferPool;
using egressgate::proxy::kMaxPooledHeadBuffers;
using egressgate::proxy::kMaxPooledRequestParsers;
using egressgate::proxy::RequestParserPool;
using Status = MessageParser::Status;

TEST_CASE("head buffers go back to the pool without allocating, up to its bound", "[proxy][pools]") {
    HeadBufferPool pool;
    CHECK(noexcept(pool.give(std::unique_ptr<char[]>())));
    std::vector<std::unique_ptr<char[]>> taken;
    for (std::size_t i = 0; i < kMaxPooledHeadBuffers + 2; ++i) taken.push_back(pool.take());
    // Past the bound a buffer is let go; none of the gives may allocate.
    CHECK(allocations_in([&] {
              for (auto& buffer : taken) pool.give(std::move(buffer));
          }) == 0);
    // The pool holds its bound: that many takes allocate nothing, and the next one must.
    taken.clear();
    taken.reserve(kMaxPooledHeadBuffers + 1);
    CHECK(allocations_in([&] {
              for (std::size_t i = 0; i < kMaxPooledHeadBuffers; ++i) taken.push_back(pool.take());
          }) == 0);
    CHECK(allocations_in([&] { taken.push_back(pool.take()); }) == 1);
}

TEST_CASE("request parsers go back reset, without allocating, up to the pool's bound", "[proxy][pools]") {
    RequestParserPool pool;
    CHECK(noexcept(pool.give(std::unique_ptr<MessageParser>())));
    // Heads with buffers past what a reset keeps, so that giving back has some to let go.
    const std::string long_head = "GET http://a.example/" + std::string(1000, 'p') + " HTTP/1.1\r\nHost: a.example\r\n" +
                                  std::string(40, 'x') + ": y\r\n\r\n";
    std::vector<std::unique_ptr<MessageParser>> taken;
    for (std::size_t i = 0; i < kMaxPooledRequestParsers + 2; ++i) {
        taken.push_back(pool.take());
        REQUIRE(taken.back()->feed(long_head) == Status::head_complete);
    }
    CHECK(allocations_in([&] {
              for (auto& parser : taken) pool.give(std::move(parser));
          }) == 0);
    taken.clear();
    taken.reserve(kMaxPooledRequestParsers + 1);
    CHECK(allocations_in([&] {
              for (std::size_t i = 0; i < kMaxPooledRequestParsers; ++i) taken.push_back(pool.take());
          }) == 0);
    CHECK(allocations_in([&] { taken.push_back(pool.take()); }) > 0);  // the pool was empty
    // A parser from the pool reads the next connection's head as a new one would.
    const std::string connect = "CONNECT next.blob.core.windows.net:443 HTTP/1.1\r\nHost: next\r\n\r\n";
    REQUIRE(taken.front()->feed(connect) == Status::head_complete);
    CHECK(taken.front()->consumed() == connect.size());
    CHECK(taken.front()->head().target == "next.blob.core.windows.net:443");
    CHECK(taken.front()->head().headers.size() == 1);
}
