//! A check that this process really runs inside AWS Lambda, before the runtime is started.
//!
//! `lambda_runtime` panics when its environment variables are missing or malformed; this turns
//! each such case into one clear line, so running the binary by hand says what to do instead.

/// The variables `lambda_runtime` needs, each set by Lambda itself.
const REQUIRED: [&str; 3] =
    ["AWS_LAMBDA_FUNCTION_NAME", "AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "AWS_LAMBDA_FUNCTION_VERSION"];

/// `Ok` if the Lambda runtime can start here; otherwise the one line to print. `binary` names
/// the program in the message.
pub fn check_lambda_env(
    binary: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<(), String> {
    let Some(api) = lookup("AWS_LAMBDA_RUNTIME_API") else {
        return Err(format!(
            "{binary}: AWS_LAMBDA_RUNTIME_API is not set: this binary runs inside AWS Lambda; \
             use `nton run` to run the pipeline locally"
        ));
    };
    if http::Uri::try_from(api.as_str()).is_err() {
        return Err(format!("{binary}: AWS_LAMBDA_RUNTIME_API={api:?} is not a host:port address"));
    }
    for var in REQUIRED {
        if lookup(var).is_none() {
            return Err(format!(
                "{binary}: {var} is not set although AWS_LAMBDA_RUNTIME_API is: \
                 Lambda sets both; set {var} too to emulate it"
            ));
        }
    }
    let memory = lookup("AWS_LAMBDA_FUNCTION_MEMORY_SIZE").unwrap_or_default();
    if memory.parse::<i32>().is_err() {
        return Err(format!(
            "{binary}: AWS_LAMBDA_FUNCTION_MEMORY_SIZE={memory:?} is not an integer (MiB)"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn check(vars: &[(&str, &str)]) -> Result<(), String> {
        let vars: HashMap<&str, &str> = vars.iter().copied().collect();
        check_lambda_env("nton-init", |name| vars.get(name).map(|v| v.to_string()))
    }

    const LAMBDA: [(&str, &str); 4] = [
        ("AWS_LAMBDA_RUNTIME_API", "127.0.0.1:9001"),
        ("AWS_LAMBDA_FUNCTION_NAME", "nton-init"),
        ("AWS_LAMBDA_FUNCTION_MEMORY_SIZE", "1024"),
        ("AWS_LAMBDA_FUNCTION_VERSION", "$LATEST"),
    ];

    #[test]
    fn outside_lambda_says_so_in_one_line() {
        let err = check(&[]).unwrap_err();
        assert_eq!(
            err,
            "nton-init: AWS_LAMBDA_RUNTIME_API is not set: this binary runs inside AWS Lambda; \
             use `nton run` to run the pipeline locally"
        );
        assert!(!err.contains('\n'));
    }

    #[test]
    fn inside_lambda_passes() {
        assert_eq!(check(&LAMBDA), Ok(()));
    }

    #[test]
    fn each_missing_or_bad_variable_is_named() {
        for (missing, _) in &LAMBDA[1..] {
            let vars: Vec<_> = LAMBDA.iter().copied().filter(|(name, _)| name != missing).collect();
            let err = check(&vars).unwrap_err();
            assert!(err.starts_with(&format!("nton-init: {missing} is not set")), "{err}");
        }
        let mut vars = LAMBDA;
        vars[2].1 = "lots";
        assert!(check(&vars).unwrap_err().contains("AWS_LAMBDA_FUNCTION_MEMORY_SIZE=\"lots\""));
        let mut vars = LAMBDA;
        vars[0].1 = "not a uri";
        assert!(check(&vars).unwrap_err().contains("AWS_LAMBDA_RUNTIME_API=\"not a uri\""));
    }
}
