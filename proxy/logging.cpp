#include "proxy/logging.hpp"

#include <cstdlib>
#include <memory>

#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_color_sinks.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

namespace egressgate::proxy {

namespace {

// sd-daemon(3) priority prefixes: what journald reads from the start of a stderr line.
char syslog_priority(spdlog::level::level_enum level) {
    switch (level) {
    case spdlog::level::trace:
    case spdlog::level::debug: return '7';
    case spdlog::level::info: return '6';
    case spdlog::level::warn: return '4';
    case spdlog::level::err: return '3';
    case spdlog::level::critical: return '2';
    case spdlog::level::off:
    case spdlog::level::n_levels: break;
    }
    return '6';
}

class PriorityFlag final : public spdlog::custom_flag_formatter {
public:
    void format(const spdlog::details::log_msg& message, const std::tm&, spdlog::memory_buf_t& out) override {
        const char prefix[] = {'<', syslog_priority(message.level), '>'};
        out.append(prefix, prefix + sizeof prefix);
    }
    std::unique_ptr<custom_flag_formatter> clone() const override { return std::make_unique<PriorityFlag>(); }
};

}  // namespace

void set_up_logging() {
    if (std::getenv("JOURNAL_STREAM") == nullptr) {
        spdlog::set_default_logger(spdlog::stderr_color_mt("egressgate"));
        return;
    }
    spdlog::set_default_logger(spdlog::stderr_logger_mt("egressgate"));
    auto formatter = std::make_unique<spdlog::pattern_formatter>();
    formatter->add_flag<PriorityFlag>('*').set_pattern("%*%v");
    spdlog::set_formatter(std::move(formatter));
}

}  // namespace egressgate::proxy
