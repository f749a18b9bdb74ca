// Times AWS Labs' Node aws-kinesis-agg with the AWS SDK for JavaScript v3
// putting user records.
//
// Usage: node produce.js <endpoint> <stream> <count> <bytes>
//   (with aws-kinesis-agg and @aws-sdk/client-kinesis on NODE_PATH)
//
// Builds <count> user records of <bytes> bytes (partition key "k<i>", data
// "<i>:" padded with "x", as `kinesis-fleet-bench produce` does), then times
// aggregating them with `RecordAggregator` (1 MiB aggregates, its only size)
// and putting the aggregates with PutRecords, one call at a time, at most 500
// entries and 5 MiB each. Prints one JSON object: user and Kinesis records,
// calls, seconds.
'use strict';

const { RecordAggregator } = require('aws-kinesis-agg');
const { KinesisClient, PutRecordsCommand } = require('@aws-sdk/client-kinesis');

const MAX_ENTRIES = 500;
const MAX_CALL_BYTES = 5 * 1024 * 1024;

function fail(message) {
  console.error(`produce.js: ${message}`);
  process.exit(1);
}

async function main() {
  const [endpoint, stream, countArg, bytesArg, ...rest] = process.argv.slice(2);
  const count = Number.parseInt(countArg, 10);
  const size = Number.parseInt(bytesArg, 10);
  if (!stream || rest.length > 0 || Number.isNaN(count) || Number.isNaN(size)) {
    fail('usage: node produce.js <endpoint> <stream> <count> <bytes>');
  }
  const client = new KinesisClient({
    endpoint,
    region: 'us-east-1',
    credentials: { accessKeyId: 'bench', secretAccessKey: 'bench' },
  });
  const records = [];
  for (let i = 0; i < count; i++) {
    const data = Buffer.alloc(Math.max(size, `${i}:`.length), 'x');
    data.write(`${i}:`);
    records.push({ partitionKey: `k${i}`, data });
  }
  let kinesisRecords = 0;
  let calls = 0;
  let batch = [];
  let batchBytes = 0;

  const put = async () => {
    const out = await client.send(new PutRecordsCommand({ StreamName: stream, Records: batch }));
    if (out.FailedRecordCount) fail(`${out.FailedRecordCount} entries failed`);
    kinesisRecords += batch.length;
    calls += 1;
    batch = [];
    batchBytes = 0;
  };
  const add = async (encoded) => {
    const entry = { PartitionKey: encoded.partitionKey, Data: encoded.data };
    if (encoded.ExplicitHashKey) entry.ExplicitHashKey = encoded.ExplicitHashKey;
    const entryBytes = encoded.data.length + Buffer.byteLength(encoded.partitionKey);
    if (batch.length === MAX_ENTRIES || (batch.length > 0 && batchBytes + entryBytes > MAX_CALL_BYTES)) {
      await put();
    }
    batch.push(entry);
    batchBytes += entryBytes;
  };

  const start = process.hrtime.bigint();
  const aggregator = new RecordAggregator();
  for (const record of records) {
    if (!aggregator.checkIfUserRecordFits(record)) await add(aggregator.build());
    aggregator.addUserRecord(record);
  }
  if (aggregator.length() > 0) await add(aggregator.build());
  if (batch.length > 0) await put();
  const seconds = Number(process.hrtime.bigint() - start) / 1e9;
  console.log(
    JSON.stringify({
      user_records: count,
      kinesis_records: kinesisRecords,
      calls,
      seconds,
      runtime: `Node ${process.version}, @aws-sdk/client-kinesis ${require('@aws-sdk/client-kinesis/package.json').version}`,
    }),
  );
}

main().catch((e) => fail(e.stack || String(e)));
