// echo_client (C++17): the same program as echo_client.c, over small RAII wrappers.
//
//   usage: echo_client_cpp URL [MESSAGE...]
//          FERROWS_CA_FILE=ca.pem echo_client_cpp wss://host:port/ hello
//
// Each handle lives in a std::unique_ptr whose deleter is its ferrows_*_free function, so
// nothing leaks on an early return or an exception; a failed call throws ferrows::Error,
// which carries the result code and the thread's last error message.

#include <ferrows.h>

#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <stdexcept>
#include <string>
#include <string_view>

namespace ferrows {

// The last error message of this thread (the details of the last failed call).
inline std::string last_error_message() {
    std::size_t length = 0;
    ferrows_last_error_message(nullptr, 0, &length);  // FERROWS_ERR_BUFFER_TOO_SMALL + length
    std::string message(length + 1, '\0');
    if (ferrows_last_error_message(message.data(), message.size(), nullptr) != FERROWS_OK) {
        return {};
    }
    message.resize(length);
    return message;
}

class Error : public std::runtime_error {
public:
    Error(const std::string& call, ferrows_result code)
        : std::runtime_error(call + ": " + ferrows_result_str(code) + " (" + details() + ")"),
          code_(code) {}

    ferrows_result code() const noexcept { return code_; }

private:
    static std::string details() {
        std::string message = last_error_message();
        return message.empty() ? "no details" : message;
    }

    ferrows_result code_;
};

inline void check(ferrows_result result, const char* call) {
    if (result != FERROWS_OK) {
        throw Error(call, result);
    }
}

namespace detail {
struct FreeConfig {
    void operator()(ferrows_config* config) const noexcept { ferrows_config_free(config); }
};
struct FreeConn {
    void operator()(ferrows_conn* conn) const noexcept { ferrows_conn_free(conn); }
};
struct FreeEvent {
    void operator()(ferrows_event* event) const noexcept { ferrows_event_free(event); }
};
}  // namespace detail

// Settings; copied by each connection when it starts, so it may go away afterwards.
class Config {
public:
    Config() {
        ferrows_config* raw = nullptr;
        check(ferrows_config_new(&raw), "ferrows_config_new");
        handle_.reset(raw);
    }

    Config& max_message_size(std::size_t bytes) {
        check(ferrows_config_set_max_message_size(handle_.get(), bytes),
              "ferrows_config_set_max_message_size");
        return *this;
    }

    Config& add_ca_pem(std::string_view pem) {
        check(ferrows_config_tls_add_ca_pem(handle_.get(),
                                            reinterpret_cast<const std::uint8_t*>(pem.data()),
                                            pem.size()),
              "ferrows_config_tls_add_ca_pem");
        return *this;
    }

    const ferrows_config* get() const noexcept { return handle_.get(); }

private:
    std::unique_ptr<ferrows_config, detail::FreeConfig> handle_;
};

// An event received from a connection; the data it points to lives as long as it does.
class Event {
public:
    explicit Event(ferrows_event* raw) noexcept : handle_(raw) {}

    std::uint32_t type() const noexcept { return ferrows_event_type(handle_.get()); }
    bool is_message() const noexcept {
        return type() == FERROWS_EVENT_TEXT || type() == FERROWS_EVENT_BINARY;
    }
    bool is_closed() const noexcept { return type() == FERROWS_EVENT_CLOSED; }

    std::string_view data() const noexcept {
        std::size_t length = 0;
        const std::uint8_t* data = ferrows_event_data(handle_.get(), &length);
        return {reinterpret_cast<const char*>(data), length};
    }

    std::uint16_t close_code() const noexcept { return ferrows_event_close_code(handle_.get()); }
    std::int32_t result() const noexcept { return ferrows_event_result(handle_.get()); }

    // A CLOSED event's reason, or an ERROR event's description.
    std::string message() const {
        std::size_t length = 0;
        ferrows_event_message(handle_.get(), nullptr, 0, &length);
        std::string text(length + 1, '\0');
        check(ferrows_event_message(handle_.get(), text.data(), text.size(), nullptr),
              "ferrows_event_message");
        text.resize(length);
        return text;
    }

private:
    std::unique_ptr<ferrows_event, detail::FreeEvent> handle_;
};

// A client connection. Destroying an open one closes it with 1001 (going away).
class Connection {
public:
    static Connection connect(const Config& config, const std::string& url,
                              std::int32_t timeout_ms = -1) {
        ferrows_conn* raw = nullptr;
        check(ferrows_connect_blocking(config.get(), url.c_str(), timeout_ms, nullptr, &raw),
              "ferrows_connect_blocking");
        return Connection(raw);
    }

    void send_text(std::string_view text, std::int32_t timeout_ms = -1) {
        send(FERROWS_MESSAGE_TEXT, text, timeout_ms);
    }

    void send_binary(std::string_view bytes, std::int32_t timeout_ms = -1) {
        send(FERROWS_MESSAGE_BINARY, bytes, timeout_ms);
    }

    // The next message or, once, the CLOSED event; throws on a timeout or after CLOSED.
    Event recv(std::int32_t timeout_ms = -1) {
        ferrows_event* raw = nullptr;
        check(ferrows_conn_recv(handle_.get(), timeout_ms, &raw), "ferrows_conn_recv");
        return Event(raw);
    }

    void close(std::uint16_t code = 1000, const std::string& reason = {}) {
        check(ferrows_conn_close(handle_.get(), code, reason.c_str()), "ferrows_conn_close");
    }

private:
    explicit Connection(ferrows_conn* raw) noexcept : handle_(raw) {}

    void send(std::uint32_t type, std::string_view data, std::int32_t timeout_ms) {
        check(ferrows_conn_send(handle_.get(), type,
                                reinterpret_cast<const std::uint8_t*>(data.data()), data.size(),
                                timeout_ms),
              "ferrows_conn_send");
    }

    std::unique_ptr<ferrows_conn, detail::FreeConn> handle_;
};

}  // namespace ferrows

namespace {

constexpr std::int32_t kWaitMs = 10000;  // every wait is bounded

std::string read_file(const char* path) {
    std::ifstream file(path, std::ios::binary);
    if (!file) {
        throw std::runtime_error(std::string("cannot read ") + path);
    }
    return {std::istreambuf_iterator<char>(file), std::istreambuf_iterator<char>()};
}

int run(int argc, char** argv) {
    ferrows::Config config;
    if (const char* ca_file = std::getenv("FERROWS_CA_FILE"); ca_file != nullptr && *ca_file) {
        config.add_ca_pem(read_file(ca_file));
    }
    auto connection = ferrows::Connection::connect(config, argv[1]);
    for (int i = 2; i < argc; ++i) {
        connection.send_text(argv[i], kWaitMs);
        ferrows::Event echo = connection.recv(kWaitMs);
        if (!echo.is_message()) {
            std::cerr << "echo_client_cpp: closed before the echo: code " << echo.close_code()
                      << ", " << ferrows_result_str(echo.result()) << " (" << echo.message()
                      << ")\n";
            return 1;
        }
        std::cout << echo.data() << '\n';
    }
    std::cout.flush();

    connection.close(1000, "bye");
    for (;;) {
        ferrows::Event event = connection.recv(kWaitMs);
        if (event.is_closed()) {
            std::cerr << "echo_client_cpp: closed with code " << event.close_code() << " ("
                      << ferrows_result_str(event.result()) << ")\n";
            return event.close_code() == 1000 && event.result() == FERROWS_OK ? 0 : 1;
        }
        // A message that crossed our close: dropped.
    }
}

}  // namespace

int main(int argc, char** argv) {
    if (argc < 2) {
        std::cerr << "usage: " << argv[0] << " URL [MESSAGE...]\n";
        return 2;
    }
    try {
        return run(argc, argv);
    } catch (const ferrows::Error& error) {
        std::cerr << "echo_client_cpp: " << error.what() << '\n';
    } catch (const std::exception& error) {
        std::cerr << "echo_client_cpp: " << error.what() << '\n';
    }
    return 1;
}
