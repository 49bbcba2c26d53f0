"""A small HTTP server on 127.0.0.1 for download tests: serves given bytes, honours Range, can cut a response short
(the connection closes mid-file) and records every request's Range header. With `hub` it also answers the few
Hugging Face hub routes `huggingface_hub` uses for a snapshot: the revision API and `resolve/<revision>/<file>`."""
import hashlib
import http.server
import json
import threading

HUB_COMMIT = "a265f773a47193eed794233aa2a0f0bb6d3eaa63"


class ZooServer:
    def __init__(self, files, hub=None):
        self.hub = hub or {}  # repo id -> {file name: bytes}, at HUB_COMMIT (also reachable as "main")
        self.files = dict(files)  # url path -> bytes
        self.cut = {}  # url path -> bytes to send before the connection is dropped
        self.requests = []  # (path, Range header or None)
        self.content_length = {}  # url path -> the Content-Length header to send instead of the true one
        self._server = None

    def start(self):
        owner = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_HEAD(self):
                owner.requests.append(("HEAD " + self.path, None))
                self._hub(body=False)

            def _hub(self, body=True):
                parts = self.path.split("?")[0].strip("/").split("/")
                if parts[:2] == ["api", "models"] and len(parts) == 5 and parts[2] in owner.hub:
                    if parts[4] not in ("main", HUB_COMMIT):
                        self.send_response(404)
                        self.send_header("X-Error-Code", "RevisionNotFound")
                        self.end_headers()
                        return True
                    files = owner.hub[parts[2]]
                    data = json.dumps({"id": parts[2], "modelId": parts[2], "sha": HUB_COMMIT, "private": False,
                                       "siblings": [{"rfilename": name} for name in files]}).encode()
                    headers = {"Content-Type": "application/json"}
                elif len(parts) == 4 and parts[0] in owner.hub and parts[1] == "resolve" \
                        and parts[2] in ("main", HUB_COMMIT) and parts[3] in owner.hub[parts[0]]:
                    data = owner.hub[parts[0]][parts[3]]
                    headers = {"X-Repo-Commit": HUB_COMMIT, "ETag": f'"{hashlib.sha256(data).hexdigest()}"'}
                else:
                    return False
                self.send_response(200)
                for name, value in {**headers, "Content-Length": str(len(data))}.items():
                    self.send_header(name, value)
                self.end_headers()
                if body:
                    self.wfile.write(data)
                return True

            def do_GET(self):
                owner.requests.append((self.path, self.headers.get("Range")))
                if owner.hub and self._hub():
                    return
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
                self.send_header("Content-Length", owner.content_length.get(self.path, str(len(data) - start)))
                self.end_headers()
                body = data[start:]
                if self.path in owner.content_length:  # a client cannot trust the length: the close ends the body
                    self.close_connection = True
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
