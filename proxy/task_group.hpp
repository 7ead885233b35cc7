#pragma once
// Coroutines a session runs side by side (a request body's upload beside the response) and
// waits for: wait() resumes once every task has ended, so tasks may refer to the waiter's state.
// Single-threaded: one worker's io_context.
#include <cstddef>
#include <exception>
#include <functional>

#include "proxy/asio.hpp"

namespace egressgate::proxy {

class TaskGroup {
public:
    explicit TaskGroup(const io_executor& executor) : executor_(executor), all_ended_(executor) {
        all_ended_.expires_at(steady_timer::time_point::max());
    }
    TaskGroup(const TaskGroup&) = delete;
    TaskGroup& operator=(const TaskGroup&) = delete;

    // `on_exception` runs if the task throws (a bug): the session ends itself, audited.
    void spawn(awaitable<void> task, std::function<void(std::exception_ptr)> on_exception) {
        ++running_;
        asio::co_spawn(executor_, std::move(task), [this, on_exception = std::move(on_exception)](std::exception_ptr e) {
            if (e) on_exception(e);
            if (--running_ == 0) all_ended_.cancel();
        });
    }

    // The timer only carries the wake-up; the count decides, so a task that ends before the
    // wait begins is not missed.
    awaitable<void> wait() {
        while (running_ > 0) {
            error_code ignored;
            co_await all_ended_.async_wait(with_error(ignored));
        }
    }

    std::size_t running() const { return running_; }

private:
    io_executor executor_;
    steady_timer all_ended_;
    std::size_t running_ = 0;
};

}  // namespace egressgate::proxy
