//! The local engine: loads the CloudFormation template, interprets its state machine (Amazon
//! States Language) and runs `batch:submitJob` on a local AWS Batch.
//!
//! Invariant: the template is the only description of the flow. Nothing here knows the
//! pipeline's states or stages; it knows ASL, CloudFormation and Batch.

pub mod asl;
pub mod batch;
pub mod bucket_dirs;
pub mod local;
pub mod record;
pub mod template;
