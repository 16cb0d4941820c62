//! Holding an identity's lease while acting for it, so two processes (two shells, two
//! `closeout serve` replicas on one store) never run for one identity at once.

use super::base::Engine;
use super::error::EngineError;
use crate::store::lease::Holder;
use std::future::Future;

impl Engine {
    /// Run `work` holding the lease on `identity`: taken first (refused with who holds it),
    /// renewed every third of its lifetime while `work` runs, given back after. If the lease
    /// is lost meanwhile, `work` is stopped where it is (the journal makes that as safe as a
    /// kill: a resume finishes it) and the run fails saying so.
    pub(super) async fn leased<T>(
        &self,
        identity: &str,
        work: impl Future<Output = Result<T, EngineError>>,
    ) -> Result<T, EngineError> {
        let holder = Holder::this_process();
        let (leases, id, h) = (self.leases.clone(), identity.to_string(), holder.clone());
        tokio::task::spawn_blocking(move || leases.acquire(&id, &h)).await??;
        let renewal = {
            let (leases, id, h) = (self.leases.clone(), identity.to_string(), holder.clone());
            async move {
                let every = leases.ttl() / 3;
                loop {
                    tokio::time::sleep(every).await;
                    let (l, i, hh) = (leases.clone(), id.clone(), h.clone());
                    match tokio::task::spawn_blocking(move || l.renew(&i, &hh)).await {
                        Ok(Ok(())) => {}
                        Ok(Err(e)) => return EngineError::from(e),
                        Err(e) => return EngineError::from(e),
                    }
                }
            }
        };
        let result = tokio::select! {
            r = work => r,
            lost = renewal => Err(lost),
        };
        let (leases, id) = (self.leases.clone(), identity.to_string());
        match tokio::task::spawn_blocking(move || leases.release(&id, &holder)).await {
            Ok(Ok(())) => {}
            // Not fatal: the lease expires on its own.
            Ok(Err(e)) => tracing::warn!(identity, error = %e, "cannot release the lease"),
            Err(e) => tracing::warn!(identity, error = %e, "cannot release the lease"),
        }
        result
    }
}
