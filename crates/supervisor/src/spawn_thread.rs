//! The thread streamlets are forked from.

/// The one thread streamlets are forked from. Not tokio's blocking pool:
/// `PR_SET_PDEATHSIG` fires when the *thread* that forked a child exits, and
/// the pool retires idle threads after ten seconds, which would kill every
/// streamlet they forked. This thread lives as long as the daemon.
#[derive(Debug)]
pub(crate) struct SpawnThread {
    jobs: std::sync::mpsc::Sender<Box<dyn FnOnce() + Send>>,
}

impl SpawnThread {
    pub fn new(runtime: tokio::runtime::Handle) -> SpawnThread {
        let (jobs, queue) = std::sync::mpsc::channel::<Box<dyn FnOnce() + Send>>();
        std::thread::Builder::new()
            .name("streamlet-spawn".into())
            .spawn(move || {
                // tokio's child reaping and the tasks `start` spawns need the runtime.
                let _runtime = runtime.enter();
                while let Ok(job) = queue.recv() {
                    job();
                }
            })
            .expect("a thread to spawn streamlets from");
        SpawnThread { jobs }
    }

    /// Runs `job` on the spawner thread; `None` if that thread is gone.
    pub async fn run<T: Send + 'static>(&self, job: impl FnOnce() -> T + Send + 'static) -> Option<T> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(job());
            }))
            .ok()?;
        result.await.ok()
    }
}
