//! Amazon States Language: a definition is loaded in two stages, raw serde types ([`raw`])
//! then a validated model ([`StateMachine`]) that the interpreter ([`run_execution`]) alone
//! uses. Everything that can be checked is checked at load, and every load error names the
//! state and the field.
//!
//! Supported: the JSONPath and JSONata query languages (at the top or per state; [`jsonata`]
//! says what the JSONata crate lacks and what is added); Task, Pass, Wait, Choice, Succeed,
//! Fail, Parallel and inline Map states; InputPath, Parameters, ResultSelector, ResultPath,
//! OutputPath, Result, or Arguments and Output with `{% %}` expressions; Retry, Catch,
//! TimeoutSeconds(Path), ItemsPath/Items, ItemSelector, MaxConcurrency(Path), workflow
//! variables (`Assign`, `$name`), intrinsic functions and the context object;
//! Distributed Maps ([`distributed`]: ItemReader, ItemBatcher, ResultWriter, tolerated
//! failures, Label) over an [`ObjectStore`] the executor supplies.
//! Refused at load, by state and field: Distributed Map's MANIFEST/PARQUET readers and JSONata
//! forms of its fields, callback tasks (`.waitForTaskToken`), activities and task credentials.
//! `HeartbeatSeconds(Path)` is checked for shape only: heartbeats come from callback and
//! activity workers, which are refused, so for the tasks that run here it changes nothing.

mod choice;
mod distributed;
mod error;
mod interp;
mod intrinsic;
mod jsonata;
mod model;
mod path;
mod payload;
mod raw;

pub use distributed::{BucketUse, ObjectStore, ObjectSummary};
pub use error::AslError;
pub use interp::{
    ExecutionContext, ExecutionObserver, ExecutionOutcome, MAX_PAYLOAD_BYTES, NullObserver,
    TaskCall, TaskExecutor, TaskFailure, run_execution,
};
pub use model::{StateMachine, TaskResource};
