//! One shutdown signal for a whole server: cloned into every worker and
//! connection, triggered once (SIGTERM, SIGINT or a test).

use tokio::sync::watch;

/// A cloneable "stop now" flag that can also be awaited.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: std::sync::Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Shutdown {
            tx: std::sync::Arc::new(tx),
            rx,
        }
    }

    /// Asks everything holding a clone to stop. Idempotent.
    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once [`Shutdown::trigger`] has been called (at once if it
    /// already was).
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // The sender lives as long as any clone of self, so an error here
        // cannot happen while we hold `self`; treat it as triggered anyway.
        let _ = rx.wait_for(|v| *v).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[tokio::test]
    async fn trigger_wakes_every_clone() {
        let s = Shutdown::new();
        let c = s.clone();
        assert!(!c.is_triggered());
        let h = tokio::spawn(async move {
            c.wait().await;
            c.is_triggered()
        });
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!h.is_finished());
        s.trigger();
        assert!(tokio::time::timeout(Duration::from_secs(2), h)
            .await
            .unwrap()
            .unwrap());
        // Waiting after the fact returns immediately.
        tokio::time::timeout(Duration::from_millis(100), s.wait())
            .await
            .unwrap();
    }
}
