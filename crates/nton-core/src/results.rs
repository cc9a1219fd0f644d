//! Where a run's results go: `s3://bucket[/prefix]`, an absolute directory path or `file:///dir`.
//!
//! One parser for the two places that read this value: the worker's `NTON_RESULTS_URL` (at
//! egress) and the CLI's `nton run --output` (before anything runs, so a bad URL is refused up
//! front instead of failing every egress child at the end of a run).

use std::path::PathBuf;

/// Where egress ships results.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ResultsTarget {
    /// An S3 bucket, with an optional key prefix (no leading or trailing `/`).
    S3 { bucket: String, prefix: Option<String> },
    /// A local directory (absolute path); created if missing.
    Dir(PathBuf),
}

/// The rule every accepted value follows, for error messages.
pub const RESULTS_URL_RULE: &str =
    "must be s3://bucket[/prefix], an absolute directory path or file:///dir";

impl ResultsTarget {
    /// Parses a results location. The error is the broken rule, without the value or its name
    /// (the caller knows which variable or option it read).
    pub fn parse(value: &str) -> Result<ResultsTarget, String> {
        if let Some(rest) = value.strip_prefix("s3://") {
            let (bucket, prefix) = match rest.split_once('/') {
                Some((bucket, prefix)) => (bucket, prefix.trim_matches('/')),
                None => (rest, ""),
            };
            validate_bucket(bucket)?;
            if prefix.split('/').any(|part| part == "." || part == "..") || prefix.contains("//") {
                return Err("the prefix must not have empty, `.` or `..` segments".to_string());
            }
            return Ok(ResultsTarget::S3 {
                bucket: bucket.to_string(),
                prefix: (!prefix.is_empty()).then(|| prefix.to_string()),
            });
        }
        let path = match value.strip_prefix("file://") {
            Some(path) => path,
            None if value.contains("://") => return Err(RESULTS_URL_RULE.to_string()),
            None => value,
        };
        let path = PathBuf::from(path);
        if !path.is_absolute() {
            return Err(RESULTS_URL_RULE.to_string());
        }
        Ok(ResultsTarget::Dir(path))
    }
}

/// S3 bucket naming rules (general purpose buckets): 3 to 63 characters of lowercase letters,
/// digits, `.` and `-`, beginning and ending with a letter or digit.
pub fn validate_bucket(bucket: &str) -> Result<(), String> {
    let len = bucket.len();
    if !(3..=63).contains(&len) {
        return Err(format!(
            "the bucket name {bucket:?} has {len} characters; it must have 3 to 63"
        ));
    }
    let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '-';
    let edge = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit();
    if !bucket.chars().all(allowed) || !bucket.starts_with(edge) || !bucket.ends_with(edge) {
        return Err(format!(
            "the bucket name {bucket:?} must be lowercase letters, digits, '.' and '-', beginning and ending with a letter or digit"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn s3_urls_keep_bucket_and_trimmed_prefix() {
        assert_eq!(
            ResultsTarget::parse("s3://my.bucket-1/runs/daily/"),
            Ok(ResultsTarget::S3 {
                bucket: "my.bucket-1".into(),
                prefix: Some("runs/daily".into())
            })
        );
        assert_eq!(
            ResultsTarget::parse("s3://my-bucket"),
            Ok(ResultsTarget::S3 { bucket: "my-bucket".into(), prefix: None })
        );
    }

    #[test]
    fn an_empty_or_short_bucket_is_named_with_its_length() {
        for (url, want) in [
            ("s3://", "the bucket name \"\" has 0 characters; it must have 3 to 63"),
            ("s3:///prefix", "the bucket name \"\" has 0 characters; it must have 3 to 63"),
            ("s3://ab", "the bucket name \"ab\" has 2 characters; it must have 3 to 63"),
        ] {
            assert_eq!(ResultsTarget::parse(url), Err(want.to_string()), "{url}");
        }
    }

    #[test]
    fn directories_must_be_absolute_and_other_schemes_are_refused() {
        assert_eq!(
            ResultsTarget::parse("file:///tmp/out"),
            Ok(ResultsTarget::Dir("/tmp/out".into()))
        );
        for bad in ["relative/dir", "http://x/y", "file://rel"] {
            assert_eq!(ResultsTarget::parse(bad), Err(RESULTS_URL_RULE.to_string()), "{bad}");
        }
        assert!(ResultsTarget::parse("s3://bucket/a/../b").is_err());
        assert!(ResultsTarget::parse("s3://bucket/a//b").is_err());
    }
}
