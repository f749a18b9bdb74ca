// Runs the s3rver CLI (arguments as for `s3rver`) with two fixes for the
// test kit:
// - any access key is accepted: s3rver does not check SigV4 signatures, but
//   it rejects access keys other than its built-in `S3RVER` one;
// - ListObjectsV2 pages: s3rver encrypts continuation tokens with single DES,
//   which OpenSSL 3 keeps in its legacy provider only. Triple DES with the
//   key three times over is the same cipher, in the default provider.
'use strict';
const crypto = require('crypto');
for (const name of ['createCipheriv', 'createDecipheriv']) {
  const original = crypto[name];
  crypto[name] = (algorithm, key, iv, options) =>
    algorithm === 'des'
      ? original('des-ede3-cbc', Buffer.concat([key, key, key]), iv, options)
      : original(algorithm, key, iv, options);
}
const AWSAccount = require('s3rver/lib/models/account');
const lookup = AWSAccount.registry.get.bind(AWSAccount.registry);
AWSAccount.registry.get = (accessKeyId) => lookup(accessKeyId) || AWSAccount.DUMMY_ACCOUNT;
require('s3rver/bin/s3rver.js');
