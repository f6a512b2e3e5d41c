//! Questions to the user. Only asked when both stdin and stderr are terminals (dialoguer hangs
//! otherwise); without one, the caller turns the question into an error naming the flag that
//! answers it, before anything is changed.

use std::io::IsTerminal;

pub fn interactive() -> bool {
    std::io::stdin().is_terminal() && std::io::stderr().is_terminal()
}

/// Yes/no, default no. `None` when there is no terminal to ask on.
pub fn confirm(question: &str) -> Option<bool> {
    if !interactive() {
        return None;
    }
    dialoguer::Confirm::new()
        .with_prompt(question)
        .default(false)
        .interact()
        .ok()
}
