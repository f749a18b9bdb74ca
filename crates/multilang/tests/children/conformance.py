#!/usr/bin/env python3
"""A MultiLang child for the conformance test: checks every message the
daemon sends, field by field and type by type, exercises every checkpoint
form and error reply, and writes what it processed.

Usage: conformance.py OUT_DIR
Writes OUT_DIR/delivered-<pid>.log ("shard<TAB>data" per record, flushed
before each status) and OUT_DIR/failures.log (one line per failed check).
"""
import base64
import json
import os
import sys

OUT = sys.argv[1]
delivered = open(os.path.join(OUT, "delivered-%d.log" % os.getpid()), "a")
failures = open(os.path.join(OUT, "failures.log"), "a")
shard = None
checkpoint_forms = set()


def fail(what):
    failures.write("%s: %s\n" % (shard, what))
    failures.flush()


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def expect_keys(message, keys):
    if set(message) != set(keys):
        fail("%s: keys %s, expected %s" % (message.get("action"), sorted(message), sorted(keys)))


def send(message):
    # As amazon_kclpy: surrounded by newlines, which the daemon must skip.
    sys.stdout.write("\n%s\n" % json.dumps(message))
    sys.stdout.flush()


def read():
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    if not line.endswith("\n"):
        fail("line without newline: %r" % line)
    return json.loads(line)


def checkpoint(sequence_number, sub_sequence_number, expected_error):
    send({"action": "checkpoint", "sequenceNumber": sequence_number, "subSequenceNumber": sub_sequence_number})
    reply = read()
    expect_keys(reply, ["action", "sequenceNumber", "subSequenceNumber", "error"])
    if reply.get("action") != "checkpoint":
        fail("checkpoint answered with %r" % reply)
    if reply.get("sequenceNumber") != sequence_number or reply.get("subSequenceNumber") != sub_sequence_number:
        fail("checkpoint reply does not echo the request: %r" % reply)
    if reply.get("error") != expected_error:
        fail("checkpoint %r/%r: error %r, expected %r" % (sequence_number, sub_sequence_number, reply.get("error"), expected_error))


def check_initialize(m):
    global shard
    expect_keys(m, ["action", "shardId", "sequenceNumber", "subSequenceNumber"])
    shard = m["shardId"]
    if not isinstance(shard, str) or not shard.startswith("shardId-"):
        fail("shardId %r" % shard)
    if not (m["sequenceNumber"] is None or isinstance(m["sequenceNumber"], str)):
        fail("initialize sequenceNumber %r" % m["sequenceNumber"])
    if not (m["subSequenceNumber"] is None or is_int(m["subSequenceNumber"])):
        fail("initialize subSequenceNumber %r" % m["subSequenceNumber"])
    # No checkpointer during initialize: the Java daemon answers InvalidStateException.
    checkpoint(None, None, "InvalidStateException")


def check_records(m):
    expect_keys(m, ["action", "records", "millisBehindLatest"])
    if not (m["millisBehindLatest"] is None or is_int(m["millisBehindLatest"])):
        fail("millisBehindLatest %r" % m["millisBehindLatest"])
    records = m["records"]
    if not isinstance(records, list) or not records:
        fail("records %r" % (records,))
        return
    for r in records:
        expect_keys(r, ["action", "data", "partitionKey", "sequenceNumber", "subSequenceNumber", "approximateArrivalTimestamp"])
        if r["action"] != "record":
            fail("record action %r" % r["action"])
        if not isinstance(r["partitionKey"], str):
            fail("partitionKey %r" % r["partitionKey"])
        if not (isinstance(r["sequenceNumber"], str) and r["sequenceNumber"].isdigit()):
            fail("sequenceNumber %r" % r["sequenceNumber"])
        if not (is_int(r["subSequenceNumber"]) and r["subSequenceNumber"] >= 0):
            fail("subSequenceNumber %r" % r["subSequenceNumber"])
        ts = r["approximateArrivalTimestamp"]
        if not (is_int(ts) and 1_500_000_000_000 < ts < 4_000_000_000_000):
            fail("approximateArrivalTimestamp %r is not epoch milliseconds" % ts)
        try:
            data = base64.b64decode(r["data"], validate=True)
        except Exception as e:
            fail("data %r is not base64: %s" % (r["data"], e))
            continue
        delivered.write("%s\t%s\n" % (shard, data.decode()))
    delivered.flush()
    first, last = records[0], records[-1]
    # Every checkpoint form: a sequence and sub-sequence, a sequence alone
    # (sub-sequence 0), and null (everything delivered so far).
    checkpoint(first["sequenceNumber"], first["subSequenceNumber"], None)
    if first["subSequenceNumber"] == 0:
        checkpoint(first["sequenceNumber"], None, None)
    checkpoint(last["sequenceNumber"], last["subSequenceNumber"], None)
    checkpoint(None, None, None)


while True:
    message = read()
    action = message.get("action")
    if action == "initialize":
        check_initialize(message)
    elif action == "processRecords":
        check_records(message)
    elif action == "shardEnded":
        expect_keys(message, ["action"])
        checkpoint(None, None, None)
    elif action == "shutdownRequested":
        expect_keys(message, ["action"])
        checkpoint(None, None, None)
    elif action == "leaseLost":
        expect_keys(message, ["action"])
        checkpoint(None, None, "InvalidStateException")
    else:
        fail("unknown action %r" % (message,))
    send({"action": "status", "responseFor": action})
