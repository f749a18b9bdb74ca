"""Times AWS Labs' Python aws-kinesis-agg with boto3 putting user records.

Usage: python produce.py <endpoint> <stream> <count> <bytes>

Builds <count> user records of <bytes> bytes (partition key "k<i>", data
"<i>:" padded with "x", as `kinesis-fleet-bench produce` does), then times
aggregating them with `RecordAggregator` (its default 1 MiB aggregates) and
putting the aggregates with boto3's PutRecords, one call at a time, at most 500
entries and 5 MiB each. Prints one JSON object: user and Kinesis records,
calls, seconds.
"""

import json
import sys
import time

import boto3
from aws_kinesis_agg.aggregator import RecordAggregator

MAX_ENTRIES = 500
MAX_CALL_BYTES = 5 * 1024 * 1024


def main():
    if len(sys.argv) != 5:
        sys.exit(__doc__)
    endpoint, stream = sys.argv[1], sys.argv[2]
    count, size = int(sys.argv[3]), int(sys.argv[4])
    client = boto3.client(
        "kinesis",
        endpoint_url=endpoint,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
    )
    records = [("k%d" % i, ("%d:" % i).encode().ljust(size, b"x")) for i in range(count)]
    totals = {"kinesis_records": 0, "calls": 0}
    batch, batch_bytes = [], 0

    def put():
        response = client.put_records(StreamName=stream, Records=batch)
        if response["FailedRecordCount"]:
            sys.exit("produce.py: %d entries failed" % response["FailedRecordCount"])
        totals["kinesis_records"] += len(batch)
        totals["calls"] += 1

    def add(aggregate):
        nonlocal batch, batch_bytes
        partition_key, explicit_hash_key, data = aggregate.get_contents()
        entry = {"PartitionKey": partition_key, "Data": data}
        if explicit_hash_key:
            entry["ExplicitHashKey"] = explicit_hash_key
        entry_bytes = len(data) + len(partition_key)
        if batch and (len(batch) == MAX_ENTRIES or batch_bytes + entry_bytes > MAX_CALL_BYTES):
            put()
            batch, batch_bytes = [], 0
        batch.append(entry)
        batch_bytes += entry_bytes

    start = time.perf_counter()
    aggregator = RecordAggregator()
    for partition_key, data in records:
        full = aggregator.add_user_record(partition_key, data)
        if full is not None:
            add(full)
    last = aggregator.clear_and_get()
    if last is not None:
        add(last)
    if batch:
        put()
    seconds = time.perf_counter() - start
    print(
        json.dumps(
            {
                "user_records": count,
                "kinesis_records": totals["kinesis_records"],
                "calls": totals["calls"],
                "seconds": seconds,
                "runtime": "Python %s, boto3 %s" % (sys.version.split()[0], boto3.__version__),
            }
        )
    )


if __name__ == "__main__":
    main()
