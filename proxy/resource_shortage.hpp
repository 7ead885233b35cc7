#pragma once
// The kernel is out of room for another descriptor, buffer or page: not the fault of any peer,
// so it is answered 503 / audited resource_exhausted, and retried after a pause where it is a
// loop (accept).
#include <cerrno>

#include "proxy/asio.hpp"

namespace egressgate::proxy {

inline bool is_resource_shortage(int error) {
    return error == EMFILE || error == ENFILE || error == ENOBUFS || error == ENOMEM;
}

inline bool is_resource_shortage(const error_code& ec) {
    return ec.category() == boost::system::system_category() && is_resource_shortage(ec.value());
}

}  // namespace egressgate::proxy
