//! The threads that normalize pages: one per core, shared by every source of the process, so that
//! normalizing uses at most every core whatever the number of sources.

use std::sync::mpsc;
use std::sync::{Arc, Mutex, OnceLock};

type Job = Box<dyn FnOnce() + Send>;

struct Pool {
    jobs: mpsc::Sender<Job>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let (jobs, rx) = mpsc::channel::<Job>();
        let rx = Arc::new(Mutex::new(rx));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        for _ in 0..threads {
            let rx = rx.clone();
            // A thread that cannot start leaves the others (when none starts, every job fails).
            let _ = std::thread::Builder::new()
                .name("orgtrail-normalize".into())
                .spawn(move || {
                    loop {
                        let job = rx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .recv();
                        match job {
                            Ok(job) => job(),
                            Err(_) => return,
                        }
                    }
                });
        }
        Pool { jobs }
    })
}

/// Starts `f` on the pool at once; the future gives its result, or an error when `f` panicked (or
/// no thread could start).
pub(crate) fn run<R: Send + 'static>(
    f: impl FnOnce() -> R + Send + 'static,
) -> impl Future<Output = Result<R, &'static str>> + Send {
    let (tx, rx) = tokio::sync::oneshot::channel();
    let job: Job = Box::new(move || {
        if let Ok(r) = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            let _ = tx.send(r);
        }
    });
    let sent = pool().jobs.send(job).is_ok();
    async move {
        if !sent {
            return Err("no normalizing thread");
        }
        rx.await.map_err(|_| "a normalizing thread panicked")
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn jobs_run_side_by_side_and_a_panic_is_an_error_that_leaves_the_pool_working() {
        let (a, b) = (super::run(|| 2 + 2), super::run(|| "side by side"));
        assert_eq!((a.await, b.await), (Ok(4), Ok("side by side")));
        let panicked = super::run(|| -> u8 { panic!("a bad page") }).await;
        assert_eq!(panicked, Err("a normalizing thread panicked"));
        assert_eq!(super::run(|| 7).await, Ok(7));
    }
}
