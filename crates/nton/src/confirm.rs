//! The typed confirmation of `nton teardown --confirm ENV`: a workflow (or a script) that
//! deletes an environment must name it twice, and a mismatch stops before any AWS call.
//! Kept apart from the teardown itself, which asks on a terminal when there is no `--yes`.

use crate::cli::TeardownCommand;
use crate::exit::CommandError;

/// Refuses a confirmation that is not exactly the environment's name. `None` (no
/// `--confirm`) passes: the terminal question or `--yes` decides then.
pub fn check(env: &str, confirm: Option<&str>) -> Result<(), CommandError> {
    match confirm {
        None => Ok(()),
        Some(typed) if typed == env => Ok(()),
        Some(typed) => Err(CommandError::bad_input(format!(
            "--confirm: {typed:?} is not the environment's name {env:?} (type it exactly); \
             nothing was deleted"
        ))),
    }
}

/// `nton teardown` from the command line: the confirmation first, then the teardown with the
/// SDK config from the environment.
pub async fn teardown(command: TeardownCommand) -> anyhow::Result<u8> {
    check(&command.teardown.stack.env, command.confirm.as_deref())?;
    if command.confirm_only {
        command.teardown.stack.check()?;
        return Ok(crate::exit::SUCCESS);
    }
    crate::aws::teardown(command.teardown).await
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::exit;

    #[test]
    fn only_the_exact_name_confirms() {
        check("dev", None).unwrap();
        check("dev", Some("dev")).unwrap();
        for typed in ["prod", "Dev", "dev ", "", " dev"] {
            let error = check("dev", Some(typed)).unwrap_err();
            assert_eq!(error.code, exit::BAD_INPUT, "{typed:?}");
            assert_eq!(
                error.message,
                format!(
                    "--confirm: {typed:?} is not the environment's name \"dev\" (type it \
                     exactly); nothing was deleted"
                )
            );
        }
    }
}
