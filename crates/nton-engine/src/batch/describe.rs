//! `DescribeJobs` and `ListJobs(arrayJobId, jobStatus)` over the scheduler's state, in the
//! API's shape ([`JobDetail`], [`JobSummary`]). A parent's description is built from its
//! kept counts, never from its children.

use std::collections::BTreeMap;

use nton_core::batch::{
    ArrayPropertiesDetail, ArrayPropertiesSummary, BatchApiError, ContainerSummary, JobDependency,
    JobDetail, JobStatus, JobSummary,
};

use super::client_error;
use super::scheduler::{Job, Scheduler};

/// AWS's limit on ids per `DescribeJobs` call.
pub(crate) const MAX_DESCRIBE_IDS: usize = 100;

impl Scheduler {
    pub fn describe(&self, ids: &[String]) -> Result<Vec<JobDetail>, BatchApiError> {
        if ids.len() > MAX_DESCRIBE_IDS {
            return Err(client_error(format!(
                "Maximum number of jobs supported is {MAX_DESCRIBE_IDS}"
            )));
        }
        // Unknown ids are left out, as AWS does.
        Ok(ids
            .iter()
            .filter_map(|id| self.resolve(id))
            .map(|(job, index)| {
                let record = &self.jobs[job as usize];
                match (record.array_size, index) {
                    (Some(_), Some(i)) => child_detail(self, record, i),
                    (Some(_), None) => parent_detail(self, record),
                    (None, _) => child_detail(self, record, 0),
                }
            })
            .collect())
    }

    pub fn list_children(
        &self,
        array_job_id: &str,
        status: JobStatus,
    ) -> Result<Vec<JobSummary>, BatchApiError> {
        let job = self
            .job_index(array_job_id)
            .ok_or_else(|| client_error(format!("Job {array_job_id} not found")))?;
        let record = &self.jobs[job as usize];
        if record.array_size.is_none() || record.counts[status.index()] == 0 {
            return Ok(Vec::new());
        }
        Ok(record
            .children
            .iter()
            .enumerate()
            .filter(|(_, child)| child.status == status)
            .map(|(child_index, child)| {
                let last = child.attempts.last().and_then(|a| a.container.as_ref());
                JobSummary {
                    job_id: record.child_id(child_index as u32),
                    job_name: record.name.clone(),
                    status: Some(child.status),
                    status_reason: child.status_reason.clone(),
                    created_at: Some(record.created_at),
                    started_at: child.started_at,
                    stopped_at: child.stopped_at,
                    array_properties: Some(ArrayPropertiesSummary {
                        size: None,
                        index: Some(child_index as u32),
                    }),
                    container: last.map(|container| ContainerSummary {
                        exit_code: container.exit_code,
                        reason: container.reason.clone(),
                    }),
                }
            })
            .collect())
    }
}

fn parent_detail(state: &Scheduler, record: &Job) -> JobDetail {
    // AWS leaves statuses without children out of the summary.
    let summary: BTreeMap<JobStatus, u32> = JobStatus::ALL
        .into_iter()
        .map(|status| (status, record.counts[status.index()]))
        .filter(|(_, count)| *count > 0)
        .collect();
    JobDetail {
        job_id: record.id.clone(),
        job_name: record.name.clone(),
        job_queue: state.queues[record.queue].spec.arn.clone(),
        job_definition: record.definition_arn.clone(),
        status: record.status,
        status_reason: None,
        created_at: Some(record.created_at),
        started_at: record.started_at,
        stopped_at: record.stopped_at,
        depends_on: record.depends_on.clone(),
        array_properties: Some(ArrayPropertiesDetail {
            status_summary: Some(summary),
            size: record.array_size,
            index: None,
        }),
        attempts: Vec::new(),
    }
}

/// An array child, or the one "child" of a plain job (which is the job itself).
fn child_detail(state: &Scheduler, record: &Job, child_index: u32) -> JobDetail {
    let child = &record.children[child_index as usize];
    let array = record.array_size.is_some();
    JobDetail {
        job_id: record.child_id(child_index),
        job_name: record.name.clone(),
        job_queue: state.queues[record.queue].spec.arn.clone(),
        job_definition: record.definition_arn.clone(),
        status: child.status,
        status_reason: child.status_reason.clone(),
        created_at: Some(record.created_at),
        started_at: child.started_at,
        stopped_at: child.stopped_at,
        depends_on: if array {
            child_dependencies(state, record, child_index)
        } else {
            record.depends_on.clone()
        },
        array_properties: array.then_some(ArrayPropertiesDetail {
            status_summary: None,
            size: None,
            index: Some(child_index),
        }),
        attempts: child.attempts.clone(),
    }
}

/// What child `child_index` itself waits on, by id: the same child of each N_TO_N dependency,
/// the previous child for SEQUENTIAL, and whole jobs.
fn child_dependencies(state: &Scheduler, record: &Job, child_index: u32) -> Vec<JobDependency> {
    record
        .depends_on
        .iter()
        .filter_map(|dep| {
            use nton_core::batch::ArrayDependencyType as T;
            let job_id = match (dep.dependency_type, &dep.job_id) {
                (Some(T::NToN), Some(id)) => {
                    state.job_index(id).map(|j| state.jobs[j as usize].child_id(child_index))?
                }
                (Some(T::Sequential), _) => {
                    if child_index == 0 {
                        return None;
                    }
                    record.child_id(child_index - 1)
                }
                (None, Some(id)) => id.clone(),
                (_, None) => return None,
            };
            Some(JobDependency { job_id: Some(job_id), dependency_type: None })
        })
        .collect()
}
