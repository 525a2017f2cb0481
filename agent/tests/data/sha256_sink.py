"""A local HTTP service for POST tests: answers each POST with the SHA-256
of the body it received and the body's length ("<hex> <bytes>\n").

Usage: sha256_sink.py PORT (listens on 127.0.0.1:PORT)."""
import hashlib
import http.server
import sys


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        left = int(self.headers.get("Content-Length", "0"))
        h = hashlib.sha256()
        got = 0
        while left:
            b = self.rfile.read(min(left, 65536))
            if not b:
                break
            h.update(b)
            got += len(b)
            left -= len(b)
        body = f"{h.hexdigest()} {got}\n".encode()
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()
