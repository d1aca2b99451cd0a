#include "engine/http_server.h"

#include <httplib.h>

#include <stdexcept>

namespace labfleet {

struct HttpServer::Impl {
  httplib::Server server;
  HttpHandler handler;
};

HttpServer::HttpServer(HttpHandler handler) : impl_(std::make_unique<Impl>()) {
  impl_->handler = std::move(handler);
  impl_->server.set_read_timeout(5, 0);
  impl_->server.set_write_timeout(5, 0);
  impl_->server.set_payload_max_length(64 * 1024);  // GET only: a request body has no use here
  impl_->server.Get(".*", [this](const httplib::Request& req, httplib::Response& res) {
    std::string query;
    if (size_t q = req.target.find('?'); q != std::string::npos) query = req.target.substr(q + 1);
    try {
      HttpResponse r = impl_->handler(req.path, query);
      res.status = r.status;
      res.set_header("Cache-Control", "no-store");
      res.set_header("X-Content-Type-Options", "nosniff");
      res.set_content(r.body, r.content_type.c_str());
    } catch (const std::exception&) {
      res.status = 500;
      res.set_content("internal error\n", "text/plain; charset=utf-8");
    }
  });
}

HttpServer::~HttpServer() { stop(); }

int HttpServer::bind(const std::string& host, int port) {
  int bound = port == 0 ? impl_->server.bind_to_any_port(host) : (impl_->server.bind_to_port(host, port) ? port : -1);
  if (bound <= 0)
    throw std::runtime_error("cannot listen on " + host + ":" + std::to_string(port) +
                             " (in use, or not an address of this machine); choose another with --listen HOST:PORT");
  return bound;
}

void HttpServer::serve() { impl_->server.listen_after_bind(); }

void HttpServer::stop() {
  if (impl_) impl_->server.stop();
}

HttpResult HttpGet(const std::string& host, int port, const std::string& path, int timeout_s) {
  httplib::Client cli(host, port);
  cli.set_connection_timeout(timeout_s, 0);
  cli.set_read_timeout(timeout_s, 0);
  HttpResult out;
  auto res = cli.Get(path);
  if (!res) {
    out.error = httplib::to_string(res.error());
    return out;
  }
  out.status = res->status;
  out.content_type = res->get_header_value("Content-Type");
  out.body = res->body;
  return out;
}

}  // namespace labfleet
