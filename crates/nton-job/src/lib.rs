//! The AWS Batch worker: one subcommand per stage (procure, process, egress).
