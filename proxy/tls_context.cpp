#include "proxy/tls_context.hpp"

#include <stdexcept>

#include <openssl/err.h>
#include <openssl/x509.h>

namespace egressgate::proxy {
namespace ssl = boost::asio::ssl;

namespace {
// Asio carries OpenSSL's packed error code in the error_code's value.
int openssl_reason(const boost::system::system_error& e) {
    return ERR_GET_REASON(static_cast<unsigned long>(e.code().value()));
}

std::string reason_of(const boost::system::system_error& e) {
    const char* text = ERR_reason_error_string(static_cast<unsigned long>(e.code().value()));
    return text != nullptr ? text : e.code().message();
}
}  // namespace

std::shared_ptr<ssl::context> load_tls_context(const std::string& cert_path, const std::string& key_path) {
    auto context = std::make_shared<ssl::context>(ssl::context::tls_server);
    context->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 | ssl::context::no_sslv3 |
                         ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1 | ssl::context::single_dh_use);
    SSL_CTX_set_min_proto_version(context->native_handle(), TLS1_2_VERSION);
    try {
        context->use_certificate_chain_file(cert_path);
    } catch (const boost::system::system_error& e) {
        throw std::runtime_error("proxy.tls_cert: cannot load \"" + cert_path + "\": " + reason_of(e));
    }
    const auto mismatch = [&] {
        return std::runtime_error("proxy.tls_key: \"" + key_path + "\" does not match the certificate in \"" +
                                  cert_path + "\"");
    };
    try {
        context->use_private_key_file(key_path, ssl::context::pem);
    } catch (const boost::system::system_error& e) {
        if (openssl_reason(e) == X509_R_KEY_VALUES_MISMATCH) throw mismatch();
        throw std::runtime_error("proxy.tls_key: cannot load \"" + key_path + "\": " + reason_of(e));
    }
    if (SSL_CTX_check_private_key(context->native_handle()) != 1) throw mismatch();
    return context;
}

}  // namespace egressgate::proxy
