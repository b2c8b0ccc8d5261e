//! A process's roles and long-running tasks as one set, on tokio-util's
//! [`TaskTracker`] and [`CancellationToken`]:
//!
//! - the first task that fails (returns an error or panics) stops them all:
//!   a role that cannot start inside `vitalwatch run` ends the process with
//!   its error instead of going unnoticed until Ctrl-C;
//! - shutdown (the signal token, or that first failure) drains the set in
//!   stages: stage 0 is told to stop first (the producers: ingest, the
//!   simulator), and each next stage only once the stages before it have
//!   finished and its [`TaskSet::before_stage`] condition holds (e.g. the
//!   consumers took what the producers sent last); so workers finish and
//!   commit what they hold;
//! - the whole drain has a deadline (`ops.drain_deadline_secs`): a task
//!   still running then is named in an error log and the set returns
//!   [`TaskSetError::DrainDeadline`] (a non-zero exit), never a silent cut.

use std::collections::BTreeMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::FutureExt as _;
use tokio::sync::mpsc;
use tokio::time::Instant;
use tokio_util::task::TaskTracker;

use crate::shutdown::CancellationToken;

/// Why a [`TaskSet`] ended badly.
#[derive(Debug, thiserror::Error)]
pub enum TaskSetError {
    /// A task failed (the first failure; the others were stopped).
    #[error("{task}: {error:#}")]
    Failed {
        /// The task's name.
        task: String,
        /// Its error.
        error: anyhow::Error,
    },
    /// Tasks still running when the drain deadline passed.
    #[error("tasks still running {}s after shutdown began (ops.drain_deadline_secs): {}", .deadline.as_secs(), .tasks.join(", "))]
    DrainDeadline {
        /// Their names.
        tasks: Vec<String>,
        /// The deadline.
        deadline: Duration,
    },
}

type Hook = Pin<Box<dyn Future<Output = ()> + Send>>;

struct Stage {
    token: CancellationToken,
    tracker: TaskTracker,
    before: Option<Hook>,
}

type Running = Arc<Mutex<BTreeMap<u64, String>>>;

/// A set of named tasks run and stopped together (see the module docs).
pub struct TaskSet {
    shutdown: CancellationToken,
    drain: Duration,
    stages: Vec<Stage>,
    running: Running,
    next_id: u64,
    done_tx: mpsc::UnboundedSender<(String, anyhow::Result<()>)>,
    done_rx: mpsc::UnboundedReceiver<(String, anyhow::Result<()>)>,
}

impl std::fmt::Debug for TaskSet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TaskSet").field("stages", &self.stages.len()).field("drain", &self.drain).finish()
    }
}

impl TaskSet {
    /// An empty set that shuts down when `shutdown` fires, with `drain` as
    /// the deadline for all its stages to finish.
    pub fn new(shutdown: CancellationToken, drain: Duration) -> Self {
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        TaskSet { shutdown, drain, stages: Vec::new(), running: Running::default(), next_id: 0, done_tx, done_rx }
    }

    fn stage(&mut self, stage: usize) -> &mut Stage {
        while self.stages.len() <= stage {
            self.stages.push(Stage { token: CancellationToken::new(), tracker: TaskTracker::new(), before: None });
        }
        &mut self.stages[stage]
    }

    /// The token that tells the tasks of `stage` to stop (give it to them).
    pub fn token(&mut self, stage: usize) -> CancellationToken {
        self.stage(stage).token.clone()
    }

    /// Runs `condition` (bounded by the drain deadline) before `stage` is
    /// told to stop, once the stages before it have finished.
    pub fn before_stage(&mut self, stage: usize, condition: impl Future<Output = ()> + Send + 'static) {
        self.stage(stage).before = Some(Box::pin(condition));
    }

    /// Spawns `task` named `name` in `stage`. Its error, or its panic, stops the set.
    pub fn spawn<F>(&mut self, stage: usize, name: impl Into<String>, task: F)
    where
        F: Future<Output = anyhow::Result<()>> + Send + 'static,
    {
        let name = name.into();
        let id = self.next_id;
        self.next_id += 1;
        self.running.lock().unwrap_or_else(|e| e.into_inner()).insert(id, name.clone());
        let (running, done) = (self.running.clone(), self.done_tx.clone());
        self.stage(stage).tracker.spawn(async move {
            let result = match std::panic::AssertUnwindSafe(task).catch_unwind().await {
                Ok(r) => r,
                Err(panic) => {
                    let what = panic
                        .downcast_ref::<&str>()
                        .map(|s| (*s).to_owned())
                        .or_else(|| panic.downcast_ref::<String>().cloned())
                        .unwrap_or_else(|| "a panic".to_owned());
                    Err(anyhow::anyhow!("panicked: {what}"))
                }
            };
            running.lock().unwrap_or_else(|e| e.into_inner()).remove(&id);
            let _ = done.send((name, result));
        });
    }

    fn running_names(&self) -> Vec<String> {
        self.running.lock().unwrap_or_else(|e| e.into_inner()).values().cloned().collect()
    }

    /// Runs until the shutdown token fires or a task fails, then drains the
    /// stages in order within the deadline.
    ///
    /// # Errors
    ///
    /// The first task failure ([`TaskSetError::Failed`]), else a drain that
    /// passed its deadline ([`TaskSetError::DrainDeadline`]).
    pub async fn run(mut self) -> Result<(), TaskSetError> {
        let mut stages = std::mem::take(&mut self.stages);
        for s in &stages {
            s.tracker.close();
        }
        let mut failure: Option<TaskSetError> = None;
        // Running: until the signal, a failure, or every task has ended by itself.
        while !(self.running_names().is_empty() && self.done_rx.is_empty()) {
            tokio::select! {
                _ = self.shutdown.cancelled() => break,
                Some((task, result)) = self.done_rx.recv() => {
                    if let Err(error) = result {
                        tracing::error!(
                            message = "Task failed; stopping the others.",
                            task = %task,
                            error = format!("{error:#}")
                        );
                        failure = Some(TaskSetError::Failed { task, error });
                        break;
                    }
                    tracing::info!(message = "Task ended.", task = %task);
                }
            }
        }
        // Draining, stage by stage, all within the deadline.
        let deadline = Instant::now() + self.drain;
        let mut late = false;
        for (i, stage) in stages.iter_mut().enumerate() {
            // The stages before this one have finished. Its condition gets at
            // most half the time left (the rest is for its own drain); after
            // a failure it is skipped: stop fast.
            if let Some(condition) = stage.before.take().filter(|_| !late && failure.is_none()) {
                let left = deadline.saturating_duration_since(Instant::now());
                if tokio::time::timeout(left / 2, condition).await.is_err() {
                    tracing::warn!(
                        message = "Drain condition not met in time; stopping the next stage anyway.",
                        stage = i
                    );
                }
            }
            stage.token.cancel();
            if !late && tokio::time::timeout_at(deadline, stage.tracker.wait()).await.is_err() {
                late = true;
            }
        }
        let still_running = self.running_names();
        // What the tasks returned while draining: the first error counts.
        while let Ok((task, result)) = self.done_rx.try_recv() {
            if let Err(error) = result {
                tracing::error!(message = "Task failed while stopping.", task = %task, error = format!("{error:#}"));
                failure.get_or_insert(TaskSetError::Failed { task, error });
            }
        }
        if late {
            tracing::error!(
                message = "Drain deadline passed; tasks still running are cut.",
                deadline_secs = self.drain.as_secs(),
                tasks = %still_running.join(", ")
            );
        }
        match failure {
            Some(f) => Err(f),
            None if late => Err(TaskSetError::DrainDeadline { tasks: still_running, deadline: self.drain }),
            None => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicBool, Ordering};

    use super::*;

    const SEC: Duration = Duration::from_secs(1);

    /// A role that works until told to stop, then takes `stop_time` to drain.
    async fn role(token: CancellationToken, stop_time: Duration, stopped: Arc<AtomicBool>) -> anyhow::Result<()> {
        token.cancelled().await;
        tokio::time::sleep(stop_time).await;
        stopped.store(true, Ordering::SeqCst);
        Ok(())
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_failure_stops_every_task() {
        let signals = CancellationToken::new();
        let mut set = TaskSet::new(signals.clone(), 30 * SEC);
        let (a, b) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
        let t0 = set.token(0);
        set.spawn(0, "ingest", role(t0, SEC, a.clone()));
        let t1 = set.token(1);
        set.spawn(1, "persist", role(t1, SEC, b.clone()));
        set.spawn(1, "alerting", async {
            tokio::time::sleep(5 * SEC).await;
            anyhow::bail!("binding alerting.http_addr 127.0.0.1:1: address in use")
        });
        let start = Instant::now();
        let err = set.run().await.unwrap_err();
        assert!(matches!(&err, TaskSetError::Failed { task, .. } if task == "alerting"), "{err}");
        assert!(err.to_string().contains("address in use"), "{err}");
        assert!(a.load(Ordering::SeqCst) && b.load(Ordering::SeqCst), "the others drained");
        // Noticed at once (5 s), then each stage's 1 s drain; no signal needed.
        assert_eq!(start.elapsed(), 7 * SEC);
        assert!(!signals.is_cancelled());
    }

    #[tokio::test(start_paused = true)]
    async fn a_panic_is_a_failure() {
        let mut set = TaskSet::new(CancellationToken::new(), 30 * SEC);
        let t = set.token(0);
        set.spawn(0, "rules", role(t, Duration::ZERO, Arc::default()));
        set.spawn(0, "broken", async { panic!("bad state") });
        let err = set.run().await.unwrap_err();
        assert_eq!(err.to_string(), "broken: panicked: bad state");
    }

    #[tokio::test(start_paused = true)]
    async fn a_task_past_the_drain_deadline_is_reported() {
        let signals = CancellationToken::new();
        let mut set = TaskSet::new(signals.clone(), 10 * SEC);
        let quick = Arc::new(AtomicBool::new(false));
        let t = set.token(0);
        set.spawn(0, "persist", role(t, SEC, quick.clone()));
        set.spawn(0, "stuck", async {
            tokio::time::sleep(Duration::from_secs(3_600)).await;
            Ok(())
        });
        let late = set.token(1);
        set.spawn(1, "api", role(late.clone(), Duration::ZERO, Arc::default()));
        tokio::spawn({
            let s = signals.clone();
            async move {
                tokio::time::sleep(2 * SEC).await;
                s.cancel();
            }
        });
        let start = Instant::now();
        let err = set.run().await.unwrap_err();
        match &err {
            TaskSetError::DrainDeadline { tasks, deadline } => {
                // The stuck task, and the later stage that got no time left.
                assert_eq!(tasks, &["stuck".to_owned(), "api".to_owned()]);
                assert_eq!(*deadline, 10 * SEC);
            }
            other => panic!("{other}"),
        }
        assert!(err.to_string().contains("stuck"), "{err}");
        assert_eq!(start.elapsed(), 12 * SEC, "signal at 2 s + the 10 s deadline, not an hour");
        assert!(quick.load(Ordering::SeqCst));
        assert!(late.is_cancelled(), "later stages are told to stop too");
    }

    #[tokio::test(start_paused = true)]
    async fn stages_stop_in_order_after_their_condition() {
        let signals = CancellationToken::new();
        let mut set = TaskSet::new(signals.clone(), 30 * SEC);
        let producer_done = Arc::new(AtomicBool::new(false));
        let t0 = set.token(0);
        set.spawn(0, "ingest", role(t0, 3 * SEC, producer_done.clone()));
        let t1 = set.token(1);
        let seen = Arc::new(Mutex::new(None));
        {
            let (seen, producer_done) = (seen.clone(), producer_done.clone());
            set.spawn(1, "persist", async move {
                t1.cancelled().await;
                *seen.lock().unwrap() = Some((Instant::now(), producer_done.load(Ordering::SeqCst)));
                Ok(())
            });
        }
        set.before_stage(1, async { tokio::time::sleep(SEC).await });
        let start = Instant::now();
        signals.cancel();
        set.run().await.unwrap();
        let (at, after_producer) = seen.lock().unwrap().unwrap();
        assert!(after_producer, "consumers are stopped after the producers finished");
        assert_eq!(at - start, 4 * SEC, "3 s producer drain + 1 s condition");
    }

    #[tokio::test(start_paused = true)]
    async fn tasks_that_all_end_end_the_set() {
        let mut set = TaskSet::new(CancellationToken::new(), SEC);
        set.spawn(0, "migrate", async { Ok(()) });
        set.run().await.unwrap();
        TaskSet::new(CancellationToken::new(), SEC).run().await.unwrap();
    }
}
