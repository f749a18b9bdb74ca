//! kinesis-fleet
