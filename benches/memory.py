#!/usr/bin/env python3
"""The measuring half of benches/memory.sh (see there). Texts: sentences from Debian's licence texts in
/usr/share/common-licenses (real English prose of varied length), the same for both sides."""
import argparse
import glob
import json
import random
import re
import statistics
import http.client
import threading
import time
import urllib.parse

ROUNDS = 3


def texts(n):
    out = []
    for f in sorted(glob.glob("/usr/share/common-licenses/*")):
        try:
            body = open(f, encoding="utf-8", errors="ignore").read()
        except OSError:
            continue
        for s in re.split(r"(?<=[.!?])\s+", re.sub(r"\s+", " ", body)):
            if 20 <= len(s) <= 600:
                out.append(s)
    random.Random(1).shuffle(out)
    return (out * (n // max(1, len(out)) + 1))[:n]


class Hearth:
    """A keep-alive connection per client thread, as the openai client (httpx) and TEI clients keep theirs."""

    def __init__(self, url, token):
        self.host = urllib.parse.urlsplit(url).netloc
        self.headers = {"authorization": "Bearer " + token, "content-type": "application/json"}
        self.local = threading.local()

    def call(self, method, path, body=None):
        if not hasattr(self.local, "conn"):
            self.local.conn = http.client.HTTPConnection(self.host, timeout=600)
        c = self.local.conn
        c.request(method, path, body=None if body is None else json.dumps(body), headers=self.headers)
        r = c.getresponse()
        data = r.read()
        if r.status >= 300:
            raise RuntimeError(f"{method} {path}: {r.status} {data[:300]!r}")
        return json.loads(data or b"null")


def rss_mb(pid, field="VmRSS"):
    for line in open(f"/proc/{pid}/status"):
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return 0.0


def pct(xs, p):
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(p / 100 * len(xs)))]


def main():
    a = argparse.ArgumentParser()
    a.add_argument("--url")
    a.add_argument("--token")
    a.add_argument("--pid", type=int)
    a.add_argument("--model")
    a.add_argument("--rows", type=int, default=100_000)
    a.add_argument("--indexes", default="ivf_pq,ivf_sq,ivf_hnsw_sq,ram",
                   help="memory.ann_index types to measure, in turn; ram: the in-memory index (memory.ram_index)")
    args = a.parse_args()
    h = Hearth(args.url, args.token)
    print(f"hearth RSS with the model loaded, idle: {rss_mb(args.pid):.1f} MB")

    single = texts(300)
    batch = texts(32 * 20)

    def hearth_b1():
        for s in single:
            h.call("POST", "/v1/embeddings", {"input": s})

    def hearth_b32():
        for i in range(0, len(batch), 32):
            h.call("POST", "/v1/embeddings", {"input": batch[i : i + 32]})

    # hearth, 8 concurrent clients sending one input each: the dynamic batcher merges them
    conc = texts(800)

    def worker(chunk):
        for s in chunk:
            h.call("POST", "/v1/embeddings", {"input": s})

    # one pass of 32-input requests first, so the RSS below has seen the largest batches
    h.call("POST", "/v1/embeddings", {"input": "warm up"})
    hearth_b32()
    t = time.perf_counter()
    ths = [threading.Thread(target=worker, args=(conc[i::8],)) for i in range(8)]
    [x.start() for x in ths]
    [x.join() for x in ths]
    hc = len(conc) / (time.perf_counter() - t)
    print(f"hearth RSS right after embedding: {rss_mb(args.pid):.1f} MB (peak {rss_mb(args.pid, 'VmHWM'):.1f} MB)")
    # after a second of empty queue hearth returns the freed activations to the kernel
    time.sleep(2)
    print(f"hearth RSS 2 s later: {rss_mb(args.pid):.1f} MB")

    import torch
    from sentence_transformers import SentenceTransformer

    st = SentenceTransformer(args.model, device="cpu")
    st.encode(["warm up"])

    def st_b1():
        for s in single:
            st.encode([s])

    def st_b32():
        st.encode(batch, batch_size=32)

    def rate(f, n):
        t = time.perf_counter()
        f()
        return n / (time.perf_counter() - t)

    # Alternating rounds, each side's rate measured right after the other's: a shared VM's speed drifts by tens of
    # percent over a minute, which one hearth pass followed by one PyTorch pass turns into a ratio error. The
    # ratios are the medians of the rounds' ratios.
    rounds = []
    for _ in range(ROUNDS):
        rounds.append((rate(hearth_b1, len(single)), rate(st_b1, len(single)),
                       rate(hearth_b32, len(batch)), rate(st_b32, len(batch))))
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads; {ROUNDS} alternating rounds")
    for label, (hi, si) in (("batch 1: ", (0, 1)), ("batch 32:", (2, 3))):
        ratios = [r[hi] / r[si] for r in rounds]
        each = " ".join(f"{r[hi]:.0f}/{r[si]:.0f}" for r in rounds)
        print(f"embeddings/s {label} hearth {statistics.median(r[hi] for r in rounds):7.1f}  sentence-transformers "
              f"{statistics.median(r[si] for r in rounds):7.1f}  ratio {statistics.median(ratios):.2f}x "
              f"(rounds, hearth/st: {each}; ratios {min(ratios):.2f}-{max(ratios):.2f}x)")
    print(f"embeddings/s 8 concurrent single-input clients (dynamic batching): hearth {hc:7.1f}")

    if args.rows == 0:
        return
    # vector search at `rows` vectors, 384 dimensions: 64 topics × 32 sub-topics, points around their sub-topic
    # (the local structure of real embeddings; the same generator as tests/memory.rs)
    dim, rows = 384, args.rows
    rnd = random.Random(7)
    topics = [[rnd.gauss(0, 1) for _ in range(dim)] for _ in range(64)]
    subs = [[x + 0.5 * rnd.gauss(0, 1) for x in topics[i // 32]] for i in range(64 * 32)]

    def vec(i, r):
        c = subs[(i * 7919) % len(subs)]
        v = [x + 0.2 * r.gauss(0, 1) for x in c]
        n = sum(x * x for x in v) ** 0.5
        return [round(x / n, 6) for x in v]

    try:
        h.call("DELETE", "/api/v1/collections/bench")
    except Exception:
        pass
    h.call("POST", "/api/v1/collections", {"name": "bench", "dimension": dim})
    t = time.perf_counter()
    for start in range(0, rows, 1000):
        docs = [{"id": f"d{i}", "vector": vec(i, rnd), "metadata": {"n": i % 10}} for i in range(start, min(rows, start + 1000))]
        h.call("POST", "/api/v1/collections/bench/documents", docs)
    print(f"upserted {rows} vectors in {time.perf_counter() - t:.1f} s")
    qr = random.Random(99)
    queries = [vec(qr.randrange(len(subs)), qr) for _ in range(200)]

    def run(exact):
        lat, res = [], []
        for q in queries:
            t = time.perf_counter()
            r = h.call("POST", "/api/v1/collections/bench/query", {"vector": q, "k": 10, "exact": exact})
            lat.append((time.perf_counter() - t) * 1000)
            res.append([x["id"] for x in r])
        return lat, res

    lat_exact, res_exact = run(True)
    print(f"query at {rows} vectors, exact (no index): p50 {pct(lat_exact, 50):.1f} ms  p99 {pct(lat_exact, 99):.1f} ms")
    # each index type in turn: the optimize call builds it (replacing the last one) and compacts; "ram" turns on the
    # in-memory index beside the last on-disk one, which then answers these unfiltered queries
    for kind in args.indexes.split(","):
        if kind == "ram":
            h.call("PATCH", "/api/v1/config", {"memory": {"ram_index": True, "index_threshold": 50_000}})
        else:
            h.call("PATCH", "/api/v1/config", {"memory": {"ann_index": kind, "ram_index": False, "index_threshold": 50_000}})
        t = time.perf_counter()
        info = h.call("POST", "/api/v1/collections/bench/optimize", {})
        took = time.perf_counter() - t
        if kind == "ram":
            print(f"in-memory index of {info['ram_index_rows']} rows built in {took:.1f} s; {info['ram_index_bytes'] / 1e6:.0f} MB; "
                  f"RSS {rss_mb(args.pid):.1f} MB")
        else:
            print(f"index {info['vector_index']} built in {took:.1f} s; {info['bytes'] / 1e6:.0f} MB on disk")
        run(False)  # warm the index cache
        lat_ann, res_ann = run(False)
        recall = sum(len(set(a) & set(b)) for a, b in zip(res_ann, res_exact)) / sum(len(b) for b in res_exact)
        print(f"query at {rows} vectors, {kind} index: p50 {pct(lat_ann, 50):.1f} ms  p99 {pct(lat_ann, 99):.1f} ms  recall@10 {recall:.3f}")
        e2e = []
        for s in texts(100):
            t = time.perf_counter()
            h.call("POST", "/api/v1/collections/bench/query", {"text": s, "k": 10})
            e2e.append((time.perf_counter() - t) * 1000)
        print(f"embed one question + search ({rows} vectors, {kind}): p50 {pct(e2e, 50):.1f} ms  p99 {pct(e2e, 99):.1f} ms")
    print(f"hearth RSS at the end: {rss_mb(args.pid):.1f} MB (peak {rss_mb(args.pid, 'VmHWM'):.1f} MB)")


if __name__ == "__main__":
    main()
