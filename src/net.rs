//! The network shell: the only code that owns sockets, and (with `process()`'s one read per
//! block) the only code that reads clocks. Each plugin instance runs one dedicated thread
//! with a single-threaded tokio runtime; it drives the sans-IO core in [`crate::proto`].

pub mod clock;
pub mod key_cache;
pub mod ntp;
pub mod receiver_thread;
pub mod room_file;
pub mod sender_thread;

use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::Notify;

/// A running network thread. Stopping it (explicitly or by drop) wakes it, waits for it to
/// finish its goodbyes and joins it, so no socket outlives the plugin instance, and no thread
/// either, but for blocking work that finishes on its own (see [`NetThread::spawn`]).
#[derive(Debug)]
pub struct NetThread {
    /// Wakes the thread's loop to make it exit.
    stop: Arc<Notify>,
    /// The thread, until joined.
    handle: Option<JoinHandle<()>>,
}

impl NetThread {
    /// Starts `body` on a new thread named `name`, inside a current-thread tokio runtime.
    /// `body` must return once the `Notify` it is given fires. Stopping then takes the time
    /// `body` needs to return, and never waits for the runtime's blocking work.
    pub fn spawn<F, Fut>(name: &str, body: F) -> std::io::Result<Self>
    where
        F: FnOnce(Arc<Notify>) -> Fut + Send + 'static,
        Fut: std::future::Future<Output = ()>,
    {
        let stop = Arc::new(Notify::new());
        let thread_stop = stop.clone();
        let handle = std::thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_io()
                    .enable_time()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        nice_plug::nice_error!("udp-midi: cannot start the network runtime: {e}");
                        return;
                    }
                };
                rt.block_on(body(thread_stop));
                // Shutting the runtime down drops every task, closing every socket, and does
                // not wait for its blocking pool. The blocking work is a DNS lookup
                // (`tokio::net::lookup_host`: `getaddrinfo` on a pool thread, for a Sender's
                // destination or an NTP server) or a room key's derivation (Argon2id, about
                // 22 ms); neither can be cancelled, and a lookup can hang: `getaddrinfo` gives up
                // only after the resolver's own timeout (glibc: 5 s per try, 2 tries, per name
                // server, `resolv.conf(5)`), and a name server that drops one query in forty
                // makes that a common case. Waiting for it would hold up the host's main thread
                // in `deactivate()`. So the pool thread finishes its work on its own and exits,
                // holding only a host name or a room code, the resolver's socket to its name
                // server, and a result nobody reads any more. While it runs, glibc keeps the
                // plugin library loaded (the thread's thread-local destructors are pending,
                // `__cxa_thread_atexit_impl`).
                rt.shutdown_background();
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
        })
    }

    /// Whether the thread is still running.
    pub fn is_running(&self) -> bool {
        self.handle.as_ref().is_some_and(|h| !h.is_finished())
    }

    /// Asks the thread to stop and waits for it.
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            // `notify_one` stores a permit if the loop is not waiting right now, so the stop
            // is never missed.
            self.stop.notify_one();
            let _ = h.join();
        }
    }
}

impl Drop for NetThread {
    fn drop(&mut self) {
        self.stop();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, Instant};

    /// A blocking task that hangs (as `getaddrinfo` does with a name server that does not
    /// answer) does not delay stopping; it finishes afterwards on its own.
    #[test]
    fn stopping_does_not_wait_for_a_hanging_lookup() {
        let (started_tx, started_rx) = std::sync::mpsc::channel();
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut t = NetThread::spawn("test net", move |stop| async move {
            let _lookup = tokio::task::spawn_blocking(move || {
                let _ = started_tx.send(());
                std::thread::sleep(Duration::from_secs(2));
                let _ = done_tx.send(());
            });
            stop.notified().await;
        })
        .expect("a thread");
        started_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the blocking task started");
        let t0 = Instant::now();
        t.stop();
        let took = t0.elapsed();
        println!("stop with a hanging blocking task took {took:?}");
        assert!(
            took < Duration::from_secs(1),
            "stop waited {took:?} for a blocking task of 2 s"
        );
        assert!(!t.is_running());
        assert!(
            done_rx.try_recv().is_err(),
            "the blocking task ended before stop returned"
        );
        done_rx
            .recv_timeout(Duration::from_secs(5))
            .expect("the blocking task ran to its end after the stop");
        assert!(!t.is_running());
    }
}
