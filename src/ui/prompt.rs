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
        .with_prompt(super::escape_controls(question))
        .default(false)
        .interact()
        .ok()
}

/// Several choices out of a list, none selected at first. `None` without a terminal.
pub fn pick_many(question: &str, items: &[String]) -> Option<Vec<usize>> {
    if !interactive() {
        return None;
    }
    let items: Vec<String> = items
        .iter()
        .map(|i| super::escape_controls(i).into_owned())
        .collect();
    dialoguer::MultiSelect::new()
        .with_prompt(super::escape_controls(question))
        .items(&items)
        .interact()
        .ok()
}

/// The user types `expected` to confirm (destructive operations). `None` without a terminal.
pub fn type_to_confirm(question: &str, expected: &str) -> Option<bool> {
    if !interactive() {
        return None;
    }
    let typed: String = dialoguer::Input::new()
        .with_prompt(super::escape_controls(question))
        .allow_empty(true)
        .interact_text()
        .ok()?;
    Some(typed.trim() == expected)
}
