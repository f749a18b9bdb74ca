"""Writes KPL aggregation test vectors made by a third-party aggregator.

The vectors let the Rust tests check our decoder against aggregates we did not
write, and our aggregator against someone else's choices. They are produced by
the Python aggregator published by AWS Labs (aws-kinesis-agg, from
github.com/awslabs/kinesis-aggregation). Regenerate from this directory with:

    python3 -m venv venv
    venv/bin/pip install aws-kinesis-agg==1.2.3 six protobuf
    venv/bin/python generate.py

(aws-kinesis-agg 1.2.3 imports `six` without declaring it.) The vectors were
written with protobuf 7.36.2. Output, in this directory:

- `<case>-<n>.bin`: the n-th aggregate's record data, as put to Kinesis.
- `manifest.json`: per case the aggregator's byte limit (null: its default)
  and, per aggregate in order, the outer partition key and explicit hash key
  and the user records it holds (partition key, explicit hash key or null,
  base64 data). The records of a case's aggregates, concatenated, are the
  records that were put, in order.
"""

import base64
import json
import os

from aws_kinesis_agg.aggregator import RecordAggregator

HERE = os.path.dirname(os.path.abspath(__file__))


def rec(pk, data, ehk=None):
    return {"partition_key": pk, "explicit_hash_key": ehk, "data": data}


CASES = [
    # (name, max_size passed to the aggregator or None for its default, records)
    ("distinct-keys", None, [rec("pk-%d" % i, b"record %d" % i) for i in range(5)]),
    (
        "repeated-keys",
        None,
        [rec(["red", "green", "blue"][i % 3], b"colour %d" % i) for i in range(10)],
    ),
    (
        "explicit-hash-keys",
        None,
        [
            rec("a", b"max hash key", str(2**128 - 1)),
            rec("b", b"zero", "0"),
            rec("c", b"no ehk"),
            rec("d", b"max again", str(2**128 - 1)),
            rec("a", b"repeated pk, new ehk", "170141183460469231731687303715884105728"),
        ],
    ),
    (
        "empty-and-binary",
        None,
        [
            rec("empty", b""),
            rec("binary", bytes(range(256))),
            rec("ünïcødé 🦀", b"\x00\xff\x00\xf3\x89\x9a\xc2"),
            rec("empty", b""),
        ],
    ),
    (
        "large-record",
        None,
        [
            rec("small", b"before"),
            rec("large", bytes(i % 251 for i in range(50_000))),
            rec("small", b"after"),
        ],
    ),
    # A small limit, so the aggregator has to start new aggregates.
    ("split", 300, [rec("k%d" % (i % 4), b"x" * (10 + 7 * i)) for i in range(12)]),
]


def b64(data):
    return base64.b64encode(data).decode("ascii")


def main():
    manifest = {"generator": "aws-kinesis-agg 1.2.3", "cases": []}
    for name, max_size, records in CASES:
        aggregator = RecordAggregator() if max_size is None else RecordAggregator(max_size=max_size)
        done, current = [], []
        for r in records:
            full = aggregator.add_user_record(r["partition_key"], r["data"], r["explicit_hash_key"])
            if full is not None:
                done.append((full, current))
                current = []
            current.append(r)
        last = aggregator.clear_and_get()
        if last is not None:
            done.append((last, current))

        case = {
            "name": name,
            "max_size": max_size,
            "aggregates": [],
        }
        for n, (agg, held) in enumerate(done):
            pk, ehk, data = agg.get_contents()
            assert agg.get_num_user_records() == len(held)
            file = "%s-%d.bin" % (name, n)
            with open(os.path.join(HERE, file), "wb") as f:
                f.write(data)
            case["aggregates"].append(
                {
                    "file": file,
                    "partition_key": pk,
                    "explicit_hash_key": ehk,
                    "records": [dict(r, data=b64(r["data"])) for r in held],
                }
            )
        manifest["cases"].append(case)
    with open(os.path.join(HERE, "manifest.json"), "w", encoding="utf-8") as f:
        json.dump(manifest, f, indent=1, ensure_ascii=False, sort_keys=True)
        f.write("\n")


if __name__ == "__main__":
    main()
