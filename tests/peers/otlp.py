#!/usr/bin/env python3
"""Two peers for the traces test, on one port each:
- an OTLP/HTTP collector (POST /v1/traces, protobuf) that decodes every ExportTraceServiceRequest with
  opentelemetry-proto (PyPI) and appends each span as a JSON line to OUT: service name, trace id, span id, parent
  id, name, attributes, status code;
- a backend that answers every request with the `traceparent`, `tracestate` and `x-request-id` it received, as JSON.

A collector started with REFUSE answers 503 to every export (an unavailable collector).
Usage: otlp.py COLLECTOR_PORT BACKEND_PORT OUT [REFUSE]"""
import json
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

COLLECTOR, BACKEND, OUT = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
REFUSE = len(sys.argv) > 4
lock = threading.Lock()


def value(v):
    kind = v.WhichOneof("value")
    return getattr(v, kind) if kind else None


class Collector(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        if REFUSE:
            self.send_response(503)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        req = ExportTraceServiceRequest()
        req.ParseFromString(body)
        with lock, open(OUT, "a") as f:
            for rs in req.resource_spans:
                res = {a.key: value(a.value) for a in rs.resource.attributes}
                for ss in rs.scope_spans:
                    for s in ss.spans:
                        f.write(json.dumps({
                            "path": self.path,
                            "content_type": self.headers.get("Content-Type"),
                            "service": res.get("service.name"),
                            "trace_id": s.trace_id.hex(),
                            "span_id": s.span_id.hex(),
                            "parent_id": s.parent_span_id.hex(),
                            "name": s.name,
                            "kind": s.kind,
                            "status": s.status.code,
                            "attributes": {a.key: value(a.value) for a in s.attributes},
                        }) + "\n")
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class Backend(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_GET(self):
        body = json.dumps({k: self.headers.get(k) for k in ("traceparent", "tracestate", "x-request-id")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass


threading.Thread(target=ThreadingHTTPServer(("127.0.0.1", BACKEND), Backend).serve_forever, daemon=True).start()
ThreadingHTTPServer(("127.0.0.1", COLLECTOR), Collector).serve_forever()
