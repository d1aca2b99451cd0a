// A small HTTP server and client for `labfleet dashboard` (the only file that includes cpp-httplib, Debian's
// libcpp-httplib-dev). The server answers GET only, from one handler, on its own thread pool; a handler that
// throws becomes a 500 with no detail. The client is for tests and health checks of a server we started.
#pragma once
#include <functional>
#include <memory>
#include <optional>
#include <string>

namespace labfleet {

struct HttpResponse {
  int status = 200;
  std::string content_type = "text/plain; charset=utf-8";
  std::string body;
};
// path without the query string; query = the raw text after '?', "" when none.
using HttpHandler = std::function<HttpResponse(const std::string& path, const std::string& query)>;

class HttpServer {
 public:
  explicit HttpServer(HttpHandler handler);
  ~HttpServer();
  // Binds HOST:PORT (PORT 0: any free port) and returns the port; throws std::runtime_error saying what to do
  // when the address cannot be bound (in use, not local, no permission).
  int bind(const std::string& host, int port);
  // Serves until stop(); call after bind(). Blocks.
  void serve();
  // Safe from any thread (a signal watcher); serve() returns soon after.
  void stop();

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

struct HttpResult {
  int status = 0;  // 0: no answer (connection refused, timed out)
  std::string content_type, body, error;
};
HttpResult HttpGet(const std::string& host, int port, const std::string& path, int timeout_s = 5);

}  // namespace labfleet
