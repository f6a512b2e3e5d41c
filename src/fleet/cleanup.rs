//! What must be undone however a run ends (a temporary read key on an archive server): the
//! domain code registers an undo action when it creates the thing, runs it itself on its
//! normal path, and `main` runs whatever is still pending on Ctrl-C or a termination signal.

use std::time::Duration;

/// An undo action, run once.
pub type CleanupFn =
    Box<dyn FnOnce() -> std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>> + Send>;

/// Pending undo actions of a run.
#[derive(Default)]
pub struct Cleanups {
    items: std::sync::Mutex<Vec<(u64, CleanupFn)>>,
    next: std::sync::atomic::AtomicU64,
}

impl Cleanups {
    /// Registers an action; the id takes it back with [`Cleanups::run`].
    pub fn push(&self, f: CleanupFn) -> u64 {
        let id = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        self.items.lock().expect("cleanups lock").push((id, f));
        id
    }

    /// Runs one action now (the normal path), if it has not run yet.
    pub async fn run(&self, id: u64) {
        let f = {
            let mut items = self.items.lock().expect("cleanups lock");
            items
                .iter()
                .position(|(i, _)| *i == id)
                .map(|p| items.remove(p).1)
        };
        if let Some(f) = f {
            f().await;
        }
    }

    /// Runs every pending action, newest first, each bounded in time (Ctrl-C).
    pub async fn run_all(&self) {
        let items: Vec<(u64, CleanupFn)> =
            std::mem::take(&mut *self.items.lock().expect("cleanups lock"));
        for (_, f) in items.into_iter().rev() {
            let _ = tokio::time::timeout(Duration::from_secs(30), f()).await;
        }
    }
}
