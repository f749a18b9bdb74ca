"""Times deaggregation by AWS Labs' Python aws-kinesis-agg on a framed file.

Usage: python deagg.py <repeats> <file>

The file holds aggregated Kinesis records, each framed as a big-endian u32
length and the record data, as written by `cargo xtask bench deagg`. The
records are loaded first, then `repeats` passes deaggregate all of them with
`iter_deaggregate_records(records, data_format="Boto3")`: raw bytes in, as
boto3 returns them, so no base64 decoding of the input. Prints one JSON object:
the median seconds of a pass, the bytes and user records it handled.
"""

import json
import struct
import sys
import time

import google.protobuf
from google.protobuf.internal import api_implementation
from aws_kinesis_agg.deaggregator import iter_deaggregate_records


def frames(data):
    """Splits the file into Boto3-style Kinesis records."""
    records, at = [], 0
    while at < len(data):
        if at + 4 > len(data):
            sys.exit("deagg.py: truncated frame header at byte %d" % at)
        (length,) = struct.unpack_from(">I", data, at)
        end = at + 4 + length
        if end > len(data):
            sys.exit("deagg.py: truncated frame at byte %d" % at)
        records.append(
            {
                "SequenceNumber": str(len(records)),
                "PartitionKey": "a",
                "ApproximateArrivalTimestamp": 0,
                "Data": data[at + 4 : end],
            }
        )
        at = end
    return records


def deaggregate_all(records):
    """Returns the user records and their data bytes; fails on a raw record."""
    count = nbytes = 0
    for user_record in iter_deaggregate_records(records, data_format="Boto3"):
        kinesis = user_record["kinesis"]
        if not kinesis.get("aggregated"):
            sys.exit("deagg.py: record %s was not deaggregated" % kinesis["sequenceNumber"])
        count += 1
        # The library returns the data base64-encoded: count the decoded bytes.
        encoded = kinesis["data"]
        nbytes += len(encoded) // 4 * 3 - encoded[-2:].count(b"=")
    return count, nbytes


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    repeats, path = max(1, int(sys.argv[1])), sys.argv[2]
    with open(path, "rb") as f:
        records = frames(f.read())
    user_records, user_bytes = deaggregate_all(records)
    seconds = []
    for _ in range(repeats):
        start = time.perf_counter()
        deaggregate_all(records)
        seconds.append(time.perf_counter() - start)
    seconds.sort()
    print(
        json.dumps(
            {
                "bytes": sum(len(r["Data"]) for r in records),
                "aggregates": len(records),
                "user_records": user_records,
                "user_bytes": user_bytes,
                "seconds": seconds[len(seconds) // 2],
                "runtime": "Python %s, protobuf %s (%s)"
                % (
                    sys.version.split()[0],
                    google.protobuf.__version__,
                    api_implementation.Type(),
                ),
            }
        )
    )


if __name__ == "__main__":
    main()
