//! The local engine: loads the CloudFormation template, interprets its state machine and runs a local AWS Batch.
