//! The supervisor: every long-running task of a role (consumer loops, HTTP
//! listeners, reload watchers) runs under it. When one ends before shutdown
//! was asked for, or panics, the others are cancelled (each commits what it
//! has done and stops) and the role returns an error naming the task, so the
//! process exits non-zero and the orchestrator restarts it. Nothing keeps
//! answering probes while scoring nothing.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use futures::FutureExt;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

#[derive(Debug, thiserror::Error)]
pub enum TaskFailed {
    #[error("task `{task}` stopped on its own before shutdown was asked for")]
    Ended { task: &'static str },
    #[error("task `{task}` panicked: {why}")]
    Panicked { task: &'static str, why: String },
}

pub struct Supervisor<T> {
    tasks: JoinSet<(&'static str, std::thread::Result<T>)>,
    shutdown: CancellationToken,
}

impl<T: Send + 'static> Supervisor<T> {
    /// Tasks are told to stop through `shutdown`, which the supervisor also
    /// cancels when one of them fails.
    pub fn new(shutdown: CancellationToken) -> Supervisor<T> {
        Supervisor {
            tasks: JoinSet::new(),
            shutdown,
        }
    }

    pub fn spawn(&mut self, name: &'static str, task: impl Future<Output = T> + Send + 'static) {
        self.tasks
            .spawn(async move { (name, AssertUnwindSafe(task).catch_unwind().await) });
    }

    /// Waits for every task; the outputs of those that ended as asked, or
    /// the first failure once all have stopped.
    pub async fn wait(mut self) -> Result<Vec<(&'static str, T)>, TaskFailed> {
        let mut done = Vec::new();
        let mut failed = None;
        while let Some(joined) = self.tasks.join_next().await {
            let (task, result) = match joined {
                Ok(r) => r,
                // Tasks are never aborted; a join error is a runtime stopping.
                Err(e) => ("unknown", Err(Box::new(e.to_string()) as _)),
            };
            let failure = match result {
                Ok(out) if self.shutdown.is_cancelled() => {
                    done.push((task, out));
                    continue;
                }
                Ok(out) => {
                    done.push((task, out));
                    TaskFailed::Ended { task }
                }
                Err(panic) => TaskFailed::Panicked {
                    task,
                    why: panic_message(panic.as_ref()),
                },
            };
            tracing::error!(error = %failure, "stopping every task: the process must restart");
            self.shutdown.cancel();
            failed.get_or_insert(failure);
        }
        match failed {
            Some(f) => Err(f),
            None => Ok(done),
        }
    }
}

fn panic_message(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_panicking_task_stops_the_others_and_is_named() {
        let shutdown = CancellationToken::new();
        let mut s = Supervisor::new(shutdown.clone());
        let s2 = shutdown.clone();
        s.spawn("loop", async move { s2.cancelled().await });
        s.spawn("score", async { panic!("boom") });
        let err = s.wait().await.unwrap_err();
        assert!(shutdown.is_cancelled());
        assert!(
            matches!(err, TaskFailed::Panicked { task: "score", ref why } if why == "boom"),
            "{err}"
        );
    }

    #[tokio::test]
    async fn a_task_that_returns_early_is_a_failure() {
        let shutdown = CancellationToken::new();
        let mut s = Supervisor::new(shutdown.clone());
        let s2 = shutdown.clone();
        s.spawn("http", async move { s2.cancelled().await });
        s.spawn("revoke", async {});
        let err = s.wait().await.unwrap_err();
        assert!(matches!(err, TaskFailed::Ended { task: "revoke" }), "{err}");
    }

    #[tokio::test]
    async fn tasks_stopped_by_shutdown_are_not_failures() {
        let shutdown = CancellationToken::new();
        let mut s = Supervisor::new(shutdown.clone());
        for name in ["a", "b"] {
            let s2 = shutdown.clone();
            s.spawn(name, async move {
                s2.cancelled().await;
                name.len()
            });
        }
        shutdown.cancel();
        let mut out = s.wait().await.unwrap();
        out.sort();
        assert_eq!(out, vec![("a", 1), ("b", 1)]);
    }
}
