#!/usr/bin/env python3
"""A Firehose-style transform: one event per line on stdin, one response per
line on stdout. Upper-cases records, drops those starting with "drop",
fails those starting with "fail" (with a reason), and exits on "crash"."""
import base64
import json
import sys

for line in sys.stdin:
    event = json.loads(line)
    out = []
    for r in event["records"]:
        data = base64.b64decode(r["data"])
        if data.startswith(b"crash"):
            sys.exit(3)
        if data.startswith(b"drop"):
            out.append({"recordId": r["recordId"], "result": "Dropped", "data": r["data"]})
        elif data.startswith(b"fail"):
            out.append({"recordId": r["recordId"], "result": "ProcessingFailed",
                        "data": r["data"], "errorMessage": "refused " + data.decode()})
        else:
            out.append({"recordId": r["recordId"], "result": "Ok",
                        "data": base64.b64encode(data.upper()).decode()})
    if event["records"] and base64.b64decode(event["records"][0]["data"]).startswith(b"garble"):
        print("this is not json", flush=True)
        continue
    if event["records"] and base64.b64decode(event["records"][0]["data"]).startswith(b"forget"):
        out = out[1:]
    print(json.dumps({"records": out}), flush=True)
