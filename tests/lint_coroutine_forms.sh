#!/bin/sh
# Fails on the co_await forms GCC 12 miscompiles in Asio coroutines (see proxy/asio.hpp):
# `co_return co_await f()`, a co_await inside an if or while condition (`if (co_await f())`,
# `if (!co_await f())`, `if (auto x = co_await f())`), and a co_await in a ?: arm, on one line or
# with the ? or : ending the line before. Comments are not code; case labels are not ?: arms.
# Run from the source tree's root.
found=$(find proxy audit http policy config tls -name '*.cpp' -o -name '*.hpp' | sort | xargs awk '
    FNR == 1 { previous = "" }
    {
        line = $0
        sub(/\/\/.*/, "", line)
        bad = line ~ /co_return[ \t]+co_await/ ||
              line ~ /(if|while)[ \t]*\(([^()]|\([^()]*\))*co_await/ ||
              line ~ /\?[ \t]*co_await/ ||
              (line ~ /[^:]:[ \t]*co_await/ && line !~ /^[ \t]*(case[ \t].*|default[ \t]*):[ \t]*co_await/) ||
              (line ~ /^[ \t]*co_await/ && previous ~ /[?:][ \t]*$/ && previous !~ /^[ \t]*(case[ \t].*|default[ \t]*):[ \t]*$/)
        if (bad) print FILENAME ":" FNR ": " $0
        previous = line
    }')
[ -z "$found" ] && exit 0
printf 'co_await forms that GCC 12 miscompiles (await into a local first):\n%s\n' "$found" >&2
exit 1
