//! What a command prints: lines for a person, or one JSON document with `--json`; and how a
//! failure is said on standard error in either mode.

use crate::exit::{Failure, sentence};

/// A command's result, in both forms.
#[derive(Debug)]
pub struct Output {
    pub text: String,
    pub json: serde_json::Value,
}

/// What a command ended with: its result, and a failure to report after it (a listing with
/// unreadable entries prints the listing and still fails).
#[derive(Debug)]
pub struct Outcome {
    pub output: Output,
    pub failure: Option<anyhow::Error>,
}

impl Outcome {
    pub fn done(text: String, json: serde_json::Value) -> Outcome {
        Outcome {
            output: Output { text, json },
            failure: None,
        }
    }

    pub fn failing(mut self, failure: anyhow::Error) -> Outcome {
        self.failure = Some(failure);
        self
    }
}

/// Prints `output` on standard output.
pub fn print(output: &Output, json: bool) {
    if json {
        println!("{}", output.json);
    } else if !output.text.is_empty() {
        print!("{}", output.text);
        if !output.text.ends_with('\n') {
            println!();
        }
    }
}

/// Says `error` on standard error, and returns the exit status for it.
pub fn report(error: &anyhow::Error, json: bool) -> u8 {
    let failure = Failure::of(error);
    let message = sentence(error);
    if json {
        let record = serde_json::json!({
            "error": message,
            "kind": failure.name(),
            "exit_code": failure.code(),
        });
        eprintln!("{record}");
    } else {
        eprintln!("cairn: {message}");
    }
    failure.code()
}
