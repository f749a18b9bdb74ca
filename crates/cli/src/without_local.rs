//! `demo` and `local` in a binary built without the `local` feature:
//! the commands are hidden from the help, and running one says why it is
//! missing instead of "unrecognized subcommand".

use std::ffi::OsString;
use std::process::ExitCode;

/// Whatever follows the missing command; ignored.
#[derive(Debug, clap::Args)]
#[command(disable_help_flag = true)]
pub(crate) struct Args {
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, hide = true)]
    _ignored: Vec<OsString>,
}

/// Explains on one line that `command` is not in this build; exit status 2,
/// as for any other command kfleet does not know.
pub(crate) fn refuse(command: &str) -> ExitCode {
    eprintln!("kfleet: {}", message(command));
    ExitCode::from(2)
}

fn message(command: &str) -> String {
    format!(
        "`{command}` is not in this build: kfleet was built without its `local` feature (the embedded emulators); build it with default features to get `demo` and `local`"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_the_command_and_the_feature() {
        let text = message("demo");
        assert!(text.starts_with("`demo` is not in this build"), "{text}");
        assert!(text.contains("`local` feature"), "{text}");
    }
}
