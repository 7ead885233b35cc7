#pragma once
// The server certificate of the TLS listener ([proxy] tls_listen), loaded at start and on reload.
#include <memory>
#include <mutex>
#include <string>

#include <boost/asio/ssl.hpp>

namespace egressgate::proxy {

// TLS 1.2 and later only; the certificate chain and key come from PEM files and must match.
// Throws std::runtime_error naming the file and OpenSSL's reason.
std::shared_ptr<boost::asio::ssl::context> load_tls_context(const std::string& cert_path, const std::string& key_path);

// The context new TLS clients get; sessions keep theirs (the SSL object holds a reference).
class TlsContextHolder {
public:
    std::shared_ptr<boost::asio::ssl::context> current() const {
        std::lock_guard lock(mutex_);
        return context_;
    }
    void replace(std::shared_ptr<boost::asio::ssl::context> context) {
        std::lock_guard lock(mutex_);
        context_ = std::move(context);
    }

private:
    mutable std::mutex mutex_;
    std::shared_ptr<boost::asio::ssl::context> context_;
};

}  // namespace egressgate::proxy
