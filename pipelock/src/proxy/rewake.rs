//! Running a connection's task without waking it from inside its own poll.
//!
//! A connection's task polls several state machines that signal one another: hyper's server
//! side and the request body the handler reads, the handler and the origin connection it
//! drives ([`super::forward::pool`]), that connection and the response body it fills. Each
//! signal wakes the task that is, at that moment, polling. The runtime then queues the task
//! again and, having queued it, wakes an idle worker thread to take it: a futex wake-up, and
//! often the task moving to another core, for a poll that finds little new. On a small host
//! that costs more than the work itself.
//!
//! [`Rewoken`] polls the task's future with its own waker. A wake that arrives while the
//! future is being polled only notes that another round is due, and the future is polled
//! again at once; the task is woken for real only by wakes that arrive between polls (data
//! from the network, a timer, another task). A future that keeps waking itself (a
//! cooperative yield, an exhausted budget) gets a few rounds and then a real wake-up, so a
//! yield still yields.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll, Wake, Waker};

/// `future`, polled again at once when it wakes itself while being polled.
pub struct Rewoken<F> {
    future: Pin<Box<F>>,
    state: Arc<Rewake>,
    waker: Waker,
}

impl<F: Future> Rewoken<F> {
    pub fn new(future: F) -> Self {
        let (state, waker) = Rewake::new();
        Self {
            future: Box::pin(future),
            state,
            waker,
        }
    }
}

impl<F: Future> Future for Rewoken<F> {
    type Output = F::Output;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<F::Output> {
        let this = self.get_mut();
        let future = &mut this.future;
        this.state
            .poll(&this.waker, cx, |inner| future.as_mut().poll(inner))
    }
}

/// Rounds one poll may take before a wake from inside it is passed on to the task.
const MAX_ROUNDS: usize = 4;

/// The waker a [`Rewoken`] future is polled with.
struct Rewake {
    /// A poll through [`Rewake::poll`] is under way.
    polling: AtomicBool,
    /// Woken since the current round began.
    woken: AtomicBool,
    /// The task to wake when not polling: the last one that polled.
    task: Mutex<Option<Waker>>,
}

impl Rewake {
    /// A new waker and its shared state.
    fn new() -> (Arc<Self>, Waker) {
        let state = Arc::new(Self {
            polling: AtomicBool::new(false),
            woken: AtomicBool::new(false),
            task: Mutex::new(None),
        });
        let waker = Waker::from(Arc::clone(&state));
        (state, waker)
    }

    /// Runs `round` with `waker` (this state's) until it is ready, or pending with no wake
    /// during the round; `cx`'s task is the one woken later.
    fn poll<T>(
        &self,
        waker: &Waker,
        cx: &Context<'_>,
        mut round: impl FnMut(&mut Context<'_>) -> Poll<T>,
    ) -> Poll<T> {
        {
            let mut task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
            if !task.as_ref().is_some_and(|t| t.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        let mut inner = Context::from_waker(waker);
        for _ in 0..MAX_ROUNDS {
            self.woken.store(false, Ordering::SeqCst);
            self.polling.store(true, Ordering::SeqCst);
            let polled = round(&mut inner);
            self.polling.store(false, Ordering::SeqCst);
            if polled.is_ready() {
                return polled;
            }
            // A wake that saw `polling` set did not reach the task; it is seen here.
            if !self.woken.swap(false, Ordering::SeqCst) {
                return Poll::Pending;
            }
        }
        // Still woken after every round: let the task be polled again later.
        cx.waker().wake_by_ref();
        Poll::Pending
    }
}

impl Wake for Rewake {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::SeqCst);
        if self.polling.load(Ordering::SeqCst) {
            return;
        }
        let task = self.task.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(task) = task.as_ref() {
            task.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::AtomicUsize;

    use super::*;

    struct Count(AtomicUsize);
    impl Wake for Count {
        fn wake(self: Arc<Self>) {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }

    fn task() -> (Arc<Count>, Waker) {
        let count = Arc::new(Count(AtomicUsize::new(0)));
        let waker = Waker::from(Arc::clone(&count));
        (count, waker)
    }

    #[test]
    fn a_wake_during_the_poll_is_a_new_round_not_a_task_wake() {
        let (state, waker) = Rewake::new();
        let (count, task) = task();
        let cx = Context::from_waker(&task);
        let mut rounds = 0;
        let polled = state.poll(&waker, &cx, |inner| {
            rounds += 1;
            if rounds == 1 {
                inner.waker().wake_by_ref();
                Poll::Pending
            } else {
                Poll::Ready(rounds)
            }
        });
        assert_eq!(polled, Poll::Ready(2));
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
    }

    #[test]
    fn a_wake_after_the_poll_wakes_the_task() {
        let (state, waker) = Rewake::new();
        let (count, task) = task();
        let cx = Context::from_waker(&task);
        let mut saved = None;
        let polled: Poll<()> = state.poll(&waker, &cx, |inner| {
            saved = Some(inner.waker().clone());
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!(count.0.load(Ordering::SeqCst), 0);
        saved.expect("polled").wake();
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_round_that_always_wakes_itself_still_yields() {
        let (state, waker) = Rewake::new();
        let (count, task) = task();
        let cx = Context::from_waker(&task);
        let mut rounds = 0;
        let polled: Poll<()> = state.poll(&waker, &cx, |inner| {
            rounds += 1;
            inner.waker().wake_by_ref();
            Poll::Pending
        });
        assert!(polled.is_pending());
        assert_eq!(rounds, MAX_ROUNDS);
        assert_eq!(count.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn the_task_woken_is_the_last_that_polled() {
        let (state, waker) = Rewake::new();
        let (first, first_task) = task();
        let (second, second_task) = task();
        let mut saved = None;
        for task in [&first_task, &second_task] {
            let cx = Context::from_waker(task);
            let _: Poll<()> = state.poll(&waker, &cx, |inner| {
                saved = Some(inner.waker().clone());
                Poll::Pending
            });
        }
        saved.expect("polled").wake();
        assert_eq!(first.0.load(Ordering::SeqCst), 0);
        assert_eq!(second.0.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn a_task_under_a_runtime_sees_every_wake() {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        runtime.block_on(async {
            for _ in 0..200 {
                let (tx, rx) = tokio::sync::oneshot::channel::<u32>();
                let (ping, mut pong) = tokio::sync::mpsc::channel::<u32>(1);
                let task = tokio::spawn(Rewoken::new(async move {
                    for _ in 0..3 {
                        tokio::task::yield_now().await;
                    }
                    let mut sum = 0;
                    while let Some(n) = pong.recv().await {
                        sum += n;
                    }
                    sum + rx.await.expect("sent")
                }));
                tokio::spawn(async move {
                    for n in 1..=10 {
                        ping.send(n).await.expect("receiver alive");
                    }
                    drop(ping);
                    tokio::time::sleep(std::time::Duration::from_micros(50)).await;
                    tx.send(1000).expect("receiver alive");
                });
                let sum = tokio::time::timeout(std::time::Duration::from_secs(5), task)
                    .await
                    .expect("a lost wake-up would hang the task")
                    .expect("no panic");
                assert_eq!(sum, 1055);
            }
        });
    }
}
