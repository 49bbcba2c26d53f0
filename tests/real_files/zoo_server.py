"""A small HTTP server on 127.0.0.1 for download tests: serves given bytes, honours Range, can cut a response short
(the connection closes mid-file) and records every request's Range header."""
import http.server
import threading


class ZooServer:
    def __init__(self, files):
        self.files = dict(files)  # url path -> bytes
        self.cut = {}  # url path -> bytes to send before the connection is dropped
        self.requests = []  # (path, Range header or None)
        self._server = None

    def start(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                data = owner.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = 0
                if self.headers.get("Range"):
                    start = int(self.headers["Range"].split("=")[1].split("-")[0])
                    if start >= len(data):
                        self.send_error(416)
                        return
                    self.send_response(206)
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                else:
                    self.send_response(200)
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                if self.path in owner.cut:
                    body = body[: owner.cut.pop(self.path)]
                    self.close_connection = True
                self.wfile.write(body)
                self.wfile.flush()

            def log_message(self, *args):
                pass

        self._server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    @property
    def url(self):
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self):
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
