#!/usr/bin/env python3
"""An HTTP/1.1 backend for the proxy tests that says its name and can be held busy.
Usage: named.py PORT NAME

  GET /hold?max=S   counts as holding until GET /release (or S seconds, default 10), then "NAME held"
  GET /holding      how many /hold requests are waiting right now
  GET /release      ends every waiting /hold
  POST, PUT         reads the body (Content-Length or chunked) and answers "NAME got N"
  any other GET     "backend NAME"
"""
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

NAME = sys.argv[2]
cond = threading.Condition()
state = {"holding": 0, "generation": 0}


class Named(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, text):
        body = f"{text}\n".encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        url = urlsplit(self.path)
        if url.path == "/hold":
            limit = float(parse_qs(url.query).get("max", ["10"])[0])
            with cond:
                gen = state["generation"]
                state["holding"] += 1
                cond.notify_all()
                cond.wait_for(lambda: state["generation"] != gen, timeout=limit)
                state["holding"] -= 1
            try:
                self.answer(f"{NAME} held")
            except OSError:
                pass  # the proxy gave up on us
        elif url.path == "/holding":
            with cond:
                self.answer(str(state["holding"]))
        elif url.path == "/release":
            with cond:
                state["generation"] += 1
                cond.notify_all()
            self.answer("released")
        else:
            self.answer(f"backend {NAME}")

    def do_POST(self):
        total = 0
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            while True:
                size = int(self.rfile.readline().split(b";")[0], 16)
                if size == 0:
                    self.rfile.readline()
                    break
                total += len(self.rfile.read(size))
                self.rfile.readline()
        else:
            total = len(self.rfile.read(int(self.headers.get("Content-Length", "0"))))
        self.answer(f"{NAME} got {total}")

    do_PUT = do_POST

    def log_message(self, *args):
        pass


ThreadingHTTPServer.daemon_threads = True
ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Named).serve_forever()
