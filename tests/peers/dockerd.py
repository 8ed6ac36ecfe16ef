#!/usr/bin/env python3
"""A stand-in for the Docker Engine API on a unix socket, as far as following logs needs it (no daemon runs here):
GET /containers/json and GET /containers/<id>/logs?follow=1&timestamps=1&since=|tail=, answered as dockerd does
to an HTTP/1.0 client (the body streamed until the connection closes; 8-byte frame headers for a container without
a TTY, raw bytes for one with a TTY, the framing named in Content-Type as API 1.42+ does).

The containers come from STATE (JSON, re-read every 100 ms, so a test adds lines or stops a container by rewriting
it): {"containers": [{"Id", "Names", "Labels", "State", "Tty", "lines": [[t_ns, stream (1|2), text], ...]}]}.
Every request line is appended to REQUESTS.

Usage: dockerd.py SOCKET STATE REQUESTS"""
import datetime
import json
import os
import socketserver
import struct
import sys
import time
import urllib.parse

SOCKET, STATE, REQUESTS = sys.argv[1:4]


def state():
    for _ in range(20):
        try:
            with open(STATE) as f:
                return json.load(f)
        except (OSError, ValueError):
            time.sleep(0.02)  # being rewritten
    return {"containers": []}


def container(cid):
    return next((c for c in state()["containers"] if c["Id"] == cid), None)


def stamp(ns):
    t = datetime.datetime.fromtimestamp(ns // 1_000_000_000, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S") + ".%09dZ" % (ns % 1_000_000_000)


class Handler(socketserver.StreamRequestHandler):
    def handle(self):
        request = self.rfile.readline().decode().strip()
        while self.rfile.readline() not in (b"\r\n", b"\n", b""):
            pass
        with open(REQUESTS, "a") as f:
            f.write(request + "\n")
        _, target, _ = request.split(" ")
        url = urllib.parse.urlparse(target)
        q = dict(urllib.parse.parse_qsl(url.query))
        parts = url.path.strip("/").split("/")
        if url.path == "/containers/json":
            listed = [
                {k: c[k] for k in ("Id", "Names", "Labels", "State")}
                for c in state()["containers"]
                if c["State"] == "running"
            ]
            return self.answer(200, "application/json", json.dumps(listed).encode())
        if len(parts) == 3 and parts[0] == "containers" and parts[2] == "logs":
            return self.logs(parts[1], q)
        self.answer(404, "application/json", b'{"message":"page not found"}')

    def answer(self, status, ctype, body):
        self.wfile.write(f"HTTP/1.0 {status} X\r\nContent-Type: {ctype}\r\n\r\n".encode() + body)

    def logs(self, cid, q):
        c = container(cid)
        if c is None:
            return self.answer(404, "application/json", json.dumps({"message": f"No such container: {cid}"}).encode())
        tty = c.get("Tty", False)
        ctype = "application/vnd.docker.raw-stream" if tty else "application/vnd.docker.multiplexed-stream"
        self.wfile.write(f"HTTP/1.0 200 OK\r\nContent-Type: {ctype}\r\n\r\n".encode())
        lines = c["lines"]
        if "since" in q:
            secs, _, frac = q["since"].partition(".")
            since = int(secs) * 1_000_000_000 + int((frac + "000000000")[:9])
            # dockerd's since is inclusive
            todo = [l for l in lines if l[0] >= since]
        else:
            todo = lines[-int(q.get("tail", "all")):] if q.get("tail", "all") != "all" else lines
        sent = len(lines) - len(todo)
        while True:
            for t_ns, stream, text in todo:
                payload = f"{stamp(t_ns)} {text}\n".encode()
                if tty:
                    self.wfile.write(payload)
                else:
                    self.wfile.write(struct.pack(">BxxxI", stream, len(payload)) + payload)
            self.wfile.flush()
            sent += len(todo)
            time.sleep(0.1)
            c = container(cid)
            if c is None or c["State"] != "running" or q.get("follow") not in ("1", "true"):
                return
            todo = c["lines"][sent:]


class Server(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True


if os.path.exists(SOCKET):
    os.unlink(SOCKET)
Server(SOCKET, Handler).serve_forever()
