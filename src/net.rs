//! The network shell: the only code that owns sockets, and (with `process()`'s one read per
//! block) the only code that reads clocks. Each plugin instance runs one dedicated thread
//! with a single-threaded tokio runtime; it drives the sans-IO core in [`crate::proto`].

pub mod clock;
pub mod ntp;
pub mod receiver_thread;
pub mod room_file;
pub mod sender_thread;

use std::sync::Arc;
use std::thread::JoinHandle;
use tokio::sync::Notify;

/// A running network thread. Stopping it (explicitly or by drop) wakes it, waits for it to
/// finish its goodbyes and joins it, so no thread or socket outlives the plugin instance.
#[derive(Debug)]
pub struct NetThread {
    /// Wakes the thread's loop to make it exit.
    stop: Arc<Notify>,
    /// The thread, until joined.
    handle: Option<JoinHandle<()>>,
}

impl NetThread {
    /// Starts `body` on a new thread named `name`, inside a current-thread tokio runtime.
    /// `body` must return once the `Notify` it is given fires.
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
                // Dropping the runtime here closes every socket and joins DNS helper threads.
                rt.shutdown_timeout(std::time::Duration::from_millis(200));
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
