//! The shadow thread: where mirrored copies are sent, read and compared.
//!
//! SPEC 2.4 says the shadow never delays the client's answer. On the proxy's
//! own threads it would: every copy costs about what the client's request
//! does (a second upstream exchange, then a comparison), and a client request
//! that arrives meanwhile waits in the run queue behind it. So the copies run
//! on one thread of their own, in Linux's `SCHED_IDLE` class: the kernel runs
//! it when the proxy's workers have nothing to do and hands the CPU back the
//! moment a client request wakes one of them. (Nice 19 is not enough: the
//! scheduler may let a running nice-19 thread finish its time slice, a
//! millisecond or more, before the woken worker gets the CPU.) When the proxy is busy
//! enough that no CPU is left over, copies wait, the in-flight limit fills,
//! and further copies are skipped and counted, rather than taking time from
//! clients.
//!
//! The thread is started by the first copy, so a config without shadows costs
//! nothing, and it ends when the proxy is dropped. Upstream connections it
//! opens are kept apart from the workers' ([`Lane::Shadow`]).
//!
//! [`Lane::Shadow`]: crate::upstream::Lane::Shadow

use std::future::Future;
use std::sync::OnceLock;

use tokio::runtime::Handle;
use tokio::sync::oneshot;

/// The shadow thread, started on first use.
#[derive(Debug, Default)]
pub struct ShadowThread {
    started: OnceLock<Option<Running>>,
}

#[derive(Debug)]
struct Running {
    handle: Handle,
    /// Dropped with the proxy: the thread's runtime then stops, ending
    /// whatever copies are still in flight.
    _stop: oneshot::Sender<()>,
}

impl ShadowThread {
    /// Runs `job` on the shadow thread; false (the job dropped) when the
    /// thread could not be started.
    pub fn spawn<F>(&self, job: F) -> bool
    where
        F: Future<Output = ()> + Send + 'static,
    {
        match self.started.get_or_init(start) {
            Some(running) => {
                running.handle.spawn(job);
                true
            }
            None => false,
        }
    }
}

fn start() -> Option<Running> {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            tracing::error!(event = "shadow_thread_failed", error = %e, "cannot start the shadow thread; copies are skipped");
            return None;
        }
    };
    let handle = rt.handle().clone();
    let (stop, stopped) = oneshot::channel::<()>();
    // The runtime reaches the thread through a channel, so that if the
    // thread cannot be started it is still here to be shut down (dropping
    // it inside the caller's runtime would panic).
    let (give, take) = std::sync::mpsc::channel::<tokio::runtime::Runtime>();
    let spawned = std::thread::Builder::new()
        .name("strangler-shadow".into())
        .spawn(move || {
            let Ok(rt) = take.recv() else { return };
            lower_priority();
            // Err when the sender is dropped: the proxy is gone.
            let _ = rt.block_on(stopped);
        });
    match spawned {
        Ok(_) => match give.send(rt) {
            Ok(()) => Some(Running {
                handle,
                _stop: stop,
            }),
            // The thread ended before taking it (it cannot, short of a panic).
            Err(std::sync::mpsc::SendError(rt)) => {
                rt.shutdown_background();
                None
            }
        },
        Err(e) => {
            rt.shutdown_background();
            tracing::error!(event = "shadow_thread_failed", error = %e, "cannot start the shadow thread; copies are skipped");
            None
        }
    }
}

/// `SCHED_IDLE` for the calling thread only. Lowering one's own priority
/// needs no privilege; if it fails anyway the copies still run, at normal
/// priority. Other systems: normal priority.
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        use thread_priority::{
            NormalThreadSchedulePolicy, ThreadPriority, ThreadSchedulePolicy,
            set_thread_priority_and_policy, thread_native_id,
        };
        let idle = ThreadSchedulePolicy::Normal(NormalThreadSchedulePolicy::Idle);
        if let Err(e) =
            set_thread_priority_and_policy(thread_native_id(), ThreadPriority::Min, idle)
        {
            tracing::warn!(event = "shadow_thread_priority", error = %e, "cannot lower the shadow thread's priority; copies compete with client requests for CPU");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jobs_run_on_a_thread_of_their_own_at_low_priority() {
        let lane = ShadowThread::default();
        let (tx, rx) = std::sync::mpsc::channel();
        assert!(lane.spawn(async move {
            let name = std::thread::current().name().map(str::to_owned);
            #[cfg(target_os = "linux")]
            let idle = thread_priority::thread_schedule_policy().ok()
                == Some(thread_priority::ThreadSchedulePolicy::Normal(
                    thread_priority::NormalThreadSchedulePolicy::Idle,
                ));
            #[cfg(not(target_os = "linux"))]
            let idle = true;
            let _ = tx.send((name, idle));
        }));
        let (name, idle) = rx
            .recv_timeout(std::time::Duration::from_secs(10))
            .expect("the job ran");
        assert_eq!(name.as_deref(), Some("strangler-shadow"));
        assert!(idle, "the shadow thread runs in SCHED_IDLE");
    }

    #[test]
    fn the_thread_ends_with_its_owner() {
        let lane = ShadowThread::default();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        // A job that never finishes holds `tx` until its runtime is dropped.
        assert!(lane.spawn(async move {
            let _tx = tx;
            std::future::pending::<()>().await;
        }));
        drop(lane);
        // The sender is dropped once the runtime stops and drops the job.
        assert!(matches!(
            rx.recv_timeout(std::time::Duration::from_secs(10)),
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected)
        ));
    }
}
