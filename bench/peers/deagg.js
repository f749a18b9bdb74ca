// Times deaggregation by AWS Labs' Node aws-kinesis-agg on a framed file.
//
// Usage: node deagg.js <repeats> <file>   (with aws-kinesis-agg on NODE_PATH)
//
// The file holds aggregated Kinesis records, each framed as a big-endian u32
// length and the record data, as written by `cargo xtask bench deagg`. The
// records are loaded first, then `repeats` passes deaggregate all of them with
// `deaggregateSync`, checksums verified, as AWS SDK v3 records (`Data` is a
// Buffer). Prints one JSON object: the median seconds of a pass, the bytes and
// user records it handled.
'use strict';

const fs = require('fs');
const { deaggregateSync } = require('aws-kinesis-agg');

function fail(message) {
  console.error(`deagg.js: ${message}`);
  process.exit(1);
}

/** Splits the file into SDK v3-style Kinesis records. */
function frames(data) {
  const records = [];
  let at = 0;
  while (at < data.length) {
    if (at + 4 > data.length) fail(`truncated frame header at byte ${at}`);
    const end = at + 4 + data.readUInt32BE(at);
    if (end > data.length) fail(`truncated frame at byte ${at}`);
    records.push({
      SequenceNumber: String(records.length),
      PartitionKey: 'a',
      Data: data.subarray(at + 4, end),
    });
    at = end;
  }
  return records;
}

/** Returns the user records and their data bytes; fails on any error. */
function deaggregateAll(records) {
  let count = 0;
  let bytes = 0;
  for (const record of records) {
    deaggregateSync(record, true, (err, userRecords) => {
      if (err) fail(`record ${record.SequenceNumber}: ${err}`);
      count += userRecords.length;
      for (const user of userRecords) {
        // The library returns the data base64-encoded: count the decoded bytes.
        const encoded = user.Data;
        bytes += (encoded.length / 4) * 3 - (encoded.endsWith('==') ? 2 : encoded.endsWith('=') ? 1 : 0);
      }
    });
  }
  return { count, bytes };
}

function main() {
  const [repeatsArg, file, ...rest] = process.argv.slice(2);
  const repeats = Math.max(1, Number.parseInt(repeatsArg, 10));
  if (!file || rest.length > 0 || Number.isNaN(repeats)) fail('usage: node deagg.js <repeats> <file>');
  const records = frames(fs.readFileSync(file));
  const { count, bytes } = deaggregateAll(records);
  const seconds = [];
  for (let i = 0; i < repeats; i++) {
    const start = process.hrtime.bigint();
    deaggregateAll(records);
    seconds.push(Number(process.hrtime.bigint() - start) / 1e9);
  }
  seconds.sort((a, b) => a - b);
  console.log(
    JSON.stringify({
      bytes: records.reduce((sum, r) => sum + r.Data.length, 0),
      aggregates: records.length,
      user_records: count,
      user_bytes: bytes,
      seconds: seconds[Math.floor(seconds.length / 2)],
      runtime: `Node ${process.version}, protobufjs ${require('protobufjs/package.json').version}`,
    }),
  );
}

main();
