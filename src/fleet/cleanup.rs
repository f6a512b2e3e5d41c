//! What must be undone however a run ends (a temporary read key on an archive server): the
//! domain code registers an undo action when it creates the thing, runs it itself on its
//! normal path, and `main` runs whatever is still pending on Ctrl-C, and at the end of every
//! run. An action once started runs to its end in a task of its own: an interrupted caller
//! does not cut it short, and `main` waits for it. An action that fails (or does not finish in
//! time) is never silent: its message, which says how to undo the thing by hand, is kept for
//! `main`, which prints it and fails the run.

use std::time::Duration;

/// An undo action, run once; `Err` says what was left and how to undo it by hand.
pub type CleanupFn = Box<
    dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send>>
        + Send,
>;

/// How long `main` waits for each undo action.
const CLEANUP_LIMIT: Duration = Duration::from_secs(30);

/// Pending undo actions of a run, and those running.
#[derive(Default)]
pub struct Cleanups {
    /// Each action with what it undoes (for the message when it does not finish in time).
    items: std::sync::Mutex<Vec<(u64, String, CleanupFn)>>,
    running: std::sync::Mutex<Vec<(String, tokio::task::JoinHandle<()>)>>,
    failures: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    next: std::sync::atomic::AtomicU64,
}

impl Cleanups {
    /// Registers an action undoing `what`; the id takes it back with [`Cleanups::run`].
    pub fn push(&self, what: impl Into<String>, f: CleanupFn) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.items
            .lock()
            .expect("cleanups lock")
            .push((id, what.into(), f));
        id
    }

    /// What could not be undone so far, each with how to undo it by hand.
    pub fn failures(&self) -> Vec<String> {
        self.failures.lock().expect("cleanups lock").clone()
    }

    fn spawn(&self, what: String, f: CleanupFn) -> tokio::sync::oneshot::Receiver<()> {
        let (done, finished) = tokio::sync::oneshot::channel();
        let failures = self.failures.clone();
        let task = tokio::spawn(async move {
            if let Err(e) = f().await {
                failures.lock().expect("cleanups lock").push(e);
            }
            let _ = done.send(());
        });
        self.running
            .lock()
            .expect("cleanups lock")
            .push((what, task));
        finished
    }

    /// Runs one action now (the normal path), if it has not run yet, and waits for it.
    pub async fn run(&self, id: u64) {
        let item = {
            let mut items = self.items.lock().expect("cleanups lock");
            items
                .iter()
                .position(|(i, ..)| *i == id)
                .map(|p| items.remove(p))
        };
        if let Some((_, what, f)) = item {
            let _ = self.spawn(what, f).await;
        }
    }

    /// Runs every pending action, all at once, and waits for them and those already running; each
    /// bounded in time (Ctrl-C, and the end of every run). One that does not finish in time
    /// is a failure.
    pub async fn run_all(&self) {
        let items: Vec<(u64, String, CleanupFn)> =
            std::mem::take(&mut *self.items.lock().expect("cleanups lock"));
        for (_, what, f) in items.into_iter().rev() {
            drop(self.spawn(what, f)); // (waited for below, with the others)
        }
        let running = std::mem::take(&mut *self.running.lock().expect("cleanups lock"));
        for (what, task) in running {
            if tokio::time::timeout(CLEANUP_LIMIT, task).await.is_err() {
                self.failures.lock().expect("cleanups lock").push(format!(
                    "{what}: not done within {} s",
                    CLEANUP_LIMIT.as_secs()
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Cleanups;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn counting(n: &Arc<AtomicU32>, delay_ms: u64) -> super::CleanupFn {
        let n = n.clone();
        Box::new(move || {
            Box::pin(async move {
                tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                n.fetch_add(1, Ordering::SeqCst);
                Ok(())
            })
        })
    }

    #[tokio::test]
    async fn an_action_runs_once_even_when_its_caller_is_interrupted() {
        let (c, n) = (Arc::new(Cleanups::default()), Arc::new(AtomicU32::new(0)));
        let id = c.push("slow", counting(&n, 200));
        let pending = c.push("quick", counting(&n, 0));
        // The caller gives up (Ctrl-C drops its future) while the action runs.
        let caller = c.clone();
        let _ = tokio::time::timeout(
            Duration::from_millis(20),
            async move { caller.run(id).await },
        )
        .await;
        assert_eq!(n.load(Ordering::SeqCst), 0, "still running");
        // main: the pending one runs, the running one is waited for, none twice.
        c.run_all().await;
        assert_eq!(n.load(Ordering::SeqCst), 2);
        c.run(id).await;
        c.run(pending).await;
        c.run_all().await;
        assert_eq!(n.load(Ordering::SeqCst), 2);
        assert!(c.failures().is_empty());
    }

    #[tokio::test]
    async fn a_failed_action_is_kept_with_its_message() {
        let c = Cleanups::default();
        let id = c.push(
            "the key",
            Box::new(|| Box::pin(async { Err("revoke it by hand: X".to_string()) })),
        );
        c.push("the other", Box::new(|| Box::pin(async { Ok(()) })));
        c.run(id).await;
        c.run_all().await;
        assert_eq!(c.failures(), vec!["revoke it by hand: X".to_string()]);
    }
}
