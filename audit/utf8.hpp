#pragma once
// UTF-8 as RFC 3629 has it, for the audit line's writer and the report's reader alike.
#include <cstddef>

namespace egressgate::audit {

// The length of the well-formed UTF-8 sequence at p (no overlong forms, no surrogates, nothing
// above U+10FFFF), or 0 when the byte there does not start one that ends before `end`.
std::size_t utf8_sequence_length(const char* p, const char* end);

}  // namespace egressgate::audit
