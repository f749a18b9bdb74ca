#!/usr/bin/env python3
"""A MultiLang child that misbehaves once on one shard, then behaves.

Usage: bad.py OUT_DIR SHARD MODE
MODE: exit | hang | invalid_json | backwards | checkpoint_in_initialize | flood
      | checkpoint_after_lease_taken | checkpoint_while_refused
The first child of SHARD misbehaves at its second processRecords (after one
good, checkpointed batch); a marker file makes later children behave.
checkpoint_after_lease_taken is not misbehaviour: at its first batch the child
waits for OUT_DIR/taken (the test gives the lease to another worker), then
processes and checkpoints the batch as usual. checkpoint_while_refused: at
its first batch the child waits for OUT_DIR/refusing (the test makes the
lease table refuse writes), checkpoints, waits for OUT_DIR/lifted, then goes on as usual
(so the batch's checkpoint is retried). Every
child writes "shard<TAB>data" per processed record to OUT_DIR/delivered-<pid>.log
and the daemon's checkpoint errors to OUT_DIR/errors.log.
"""
import json
import os
import sys
import time
import base64

OUT, BAD_SHARD, MODE = sys.argv[1], sys.argv[2], sys.argv[3]
delivered = open(os.path.join(OUT, "delivered-%d.log" % os.getpid()), "a")
errors = open(os.path.join(OUT, "errors.log"), "a")
shard = None
batches = 0
marker = os.path.join(OUT, "misbehaved")


def send(message):
    sys.stdout.write("\n%s\n" % json.dumps(message))
    sys.stdout.flush()


def read():
    line = sys.stdin.readline()
    if not line:
        sys.exit(0)
    return json.loads(line)


def checkpoint(sequence_number=None, sub_sequence_number=None):
    send({"action": "checkpoint", "sequenceNumber": sequence_number, "subSequenceNumber": sub_sequence_number})
    reply = read()
    if reply.get("error") is not None:
        errors.write("%s\t%s\t%s\n" % (shard, MODE, reply["error"]))
        errors.flush()
    return reply.get("error")


def wait_for(name):
    while not os.path.exists(os.path.join(OUT, name)):
        time.sleep(0.05)


def misbehaving():
    if shard != BAD_SHARD or os.path.exists(marker):
        return False
    open(marker, "w").close()
    return True


while True:
    message = read()
    action = message["action"]
    if action == "initialize":
        shard = message["shardId"]
        if MODE == "checkpoint_in_initialize" and misbehaving():
            checkpoint()
    elif action == "processRecords":
        batches += 1
        records = message["records"]
        if MODE == "checkpoint_after_lease_taken" and misbehaving():
            wait_for("taken")
        if MODE == "checkpoint_while_refused" and misbehaving():
            wait_for("refusing")
            checkpoint()
            wait_for("lifted")
        if batches == 2 and MODE != "checkpoint_in_initialize" and misbehaving():
            if MODE == "exit":
                # Half the batch processed, then gone without a checkpoint.
                for r in records[: len(records) // 2]:
                    delivered.write("%s\t%s\n" % (shard, base64.b64decode(r["data"]).decode()))
                delivered.flush()
                os._exit(3)
            elif MODE == "hang":
                time.sleep(3600)
            elif MODE == "invalid_json":
                sys.stdout.write('{"action": "status", "responseFor": \n')
                sys.stdout.flush()
                time.sleep(3600)
            elif MODE == "backwards":
                # Behind the checkpoint of the first batch; then carry on as
                # if nothing happened (the daemon stops the child afterwards).
                checkpoint("1", 0)
            elif MODE == "flood":
                while True:
                    sys.stdout.write("noise " * 20 + "\n")
        for r in records:
            delivered.write("%s\t%s\n" % (shard, base64.b64decode(r["data"]).decode()))
        delivered.flush()
        checkpoint()
    elif action in ("shardEnded", "shutdownRequested"):
        checkpoint()
    send({"action": "status", "responseFor": action})
