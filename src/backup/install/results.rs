//! Editing a VPS's result as the passes of `vps-install backup` go: a step, a note, a
//! failure, in the result's JSON data (`steps`, `notes`) that the command layer prints.

use crate::ui::{HostResult, Outcome};

pub(super) fn ok(r: &HostResult) -> bool {
    matches!(r.status, Outcome::Ok | Outcome::Changed)
}

fn data_object(r: &mut HostResult) -> &mut serde_json::Map<String, serde_json::Value> {
    if !r.data.is_object() {
        r.data = serde_json::json!({});
    }
    r.data.as_object_mut().expect("object")
}

pub(super) fn push_step(r: &mut HostResult, step: &str, state: &str, detail: String) {
    let steps = data_object(r)
        .entry("steps")
        .or_insert_with(|| serde_json::json!([]));
    if let Some(a) = steps.as_array_mut() {
        a.push(serde_json::json!({"step": step, "state": state, "detail": detail}));
    }
}

pub(super) fn push_note(r: &mut HostResult, note: String) {
    let notes = data_object(r)
        .entry("notes")
        .or_insert_with(|| serde_json::json!([]));
    if let Some(a) = notes.as_array_mut() {
        a.push(serde_json::json!(note));
    }
}

pub(super) fn fail(r: &mut HostResult, step: &str, reason: String, stderr_tail: Option<String>) {
    r.status = Outcome::Failed;
    r.step = Some(step.into());
    r.reason = Some(reason);
    r.stderr_tail = stderr_tail;
}
