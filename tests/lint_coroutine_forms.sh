#!/bin/sh
# Fails on the co_await forms GCC 12 miscompiles in Asio coroutines (see proxy/asio.hpp):
# `co_return co_await f()`, `if (co_await f())`, `while (co_await f())` and co_await in a ?: arm.
# Comment lines are not code. Run from the source tree's root.
found=$(grep -rnE 'co_return co_await|(if|while) \(co_await|[?:][[:space:]]*co_await' \
            --include='*.cpp' --include='*.hpp' proxy audit http policy config tls |
        grep -vE '^[^:]+:[0-9]+:[[:space:]]*//')
[ -z "$found" ] && exit 0
printf 'co_await forms that GCC 12 miscompiles (await into a local first):\n%s\n' "$found" >&2
exit 1
