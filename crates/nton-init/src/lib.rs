//! The init Lambda: plans a run and writes every node's prep files to EFS.
