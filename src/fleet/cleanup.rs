//! What must be undone however a run ends (a temporary read key on an archive server): the
//! domain code registers an undo action when it creates the thing, runs it itself on its
//! normal path, and `main` runs whatever is still pending on Ctrl-C, and at the end of every
//! run. An action once started runs to its end in a task of its own: an interrupted caller
//! does not cut it short, and `main` waits for it.

use std::time::Duration;

/// An undo action, run once.
pub type CleanupFn =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

/// How long `main` waits for each undo action.
const CLEANUP_LIMIT: Duration = Duration::from_secs(30);

/// Pending undo actions of a run, and those running.
#[derive(Default)]
pub struct Cleanups {
    items: std::sync::Mutex<Vec<(u64, CleanupFn)>>,
    running: std::sync::Mutex<Vec<tokio::task::JoinHandle<()>>>,
    next: std::sync::atomic::AtomicU64,
}

impl Cleanups {
    /// Registers an action; the id takes it back with [`Cleanups::run`].
    pub fn push(&self, f: CleanupFn) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.items.lock().expect("cleanups lock").push((id, f));
        id
    }

    /// Runs one action now (the normal path), if it has not run yet, and waits for it.
    pub async fn run(&self, id: u64) {
        let f = {
            let mut items = self.items.lock().expect("cleanups lock");
            items
                .iter()
                .position(|(i, _)| *i == id)
                .map(|p| items.remove(p).1)
        };
        if let Some(f) = f {
            let (done, finished) = tokio::sync::oneshot::channel();
            let task = tokio::spawn(async move {
                f().await;
                let _ = done.send(());
            });
            self.running.lock().expect("cleanups lock").push(task);
            let _ = finished.await;
        }
    }

    /// Runs every pending action, newest first, and waits for those already running; each
    /// bounded in time (Ctrl-C, and the end of every run).
    pub async fn run_all(&self) {
        let items: Vec<(u64, CleanupFn)> =
            std::mem::take(&mut *self.items.lock().expect("cleanups lock"));
        for (_, f) in items.into_iter().rev() {
            let _ = tokio::time::timeout(CLEANUP_LIMIT, f()).await;
        }
        let running = std::mem::take(&mut *self.running.lock().expect("cleanups lock"));
        for task in running {
            let _ = tokio::time::timeout(CLEANUP_LIMIT, task).await;
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
            })
        })
    }

    #[tokio::test]
    async fn an_action_runs_once_even_when_its_caller_is_interrupted() {
        let (c, n) = (Arc::new(Cleanups::default()), Arc::new(AtomicU32::new(0)));
        let id = c.push(counting(&n, 200));
        let pending = c.push(counting(&n, 0));
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
    }
}
