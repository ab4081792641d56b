//! Records a device publishes, stored in the order its frames came.
//!
//! Store calls started side by side may reach the backend in any order (a
//! task's cooperative budget alone can reorder their first polls), so
//! publishes are chained instead: one store call at a time per connection,
//! and the `publish` frames that arrive while it runs go together in the
//! next call. Under load that is also the cheaper path: one write for many
//! records.

use std::sync::{Arc, Mutex};

use futures_util::FutureExt;
use futures_util::future::{BoxFuture, Shared};
use relayhub_core::store::{StoreError, StoreResult};

use crate::model::{DeviceRef, NewRecord, Published};
use crate::store::InboxStore;

type Outcome = Arc<StoreResult<Vec<Published>>>;

/// Records waiting for their call; `None` once the call took them.
type Collecting = Arc<Mutex<Option<Vec<NewRecord>>>>;

/// A connection's chain of publish calls.
#[derive(Default)]
pub(super) struct Uplink {
    /// The newest call: still collecting records until it starts.
    newest: Option<(Collecting, Shared<BoxFuture<'static, Outcome>>)>,
}

impl Uplink {
    /// Queues `record` behind every record queued before it; the future
    /// yields its result once its call committed.
    pub(super) fn push(
        &mut self,
        store: &Arc<dyn InboxStore>,
        device: &DeviceRef,
        record: NewRecord,
    ) -> BoxFuture<'static, StoreResult<Published>> {
        if let Some((collecting, outcome)) = &self.newest
            && let Some(records) = collecting.lock().unwrap_or_else(|e| e.into_inner()).as_mut()
        {
            records.push(record);
            return pick(outcome.clone(), records.len() - 1);
        }
        let previous = self.newest.take().map(|(_, outcome)| outcome);
        let collecting: Collecting = Arc::new(Mutex::new(Some(vec![record])));
        let (store, device, taken) = (store.clone(), device.clone(), collecting.clone());
        let outcome = async move {
            if let Some(previous) = previous {
                previous.await;
            }
            let records = taken.lock().unwrap_or_else(|e| e.into_inner()).take().unwrap_or_default();
            Arc::new(store.publish(&device, records).await)
        }
        .boxed()
        .shared();
        self.newest = Some((collecting, outcome.clone()));
        pick(outcome, 0)
    }
}

/// The result of the `index`-th record of a call.
fn pick(outcome: Shared<BoxFuture<'static, Outcome>>, index: usize) -> BoxFuture<'static, StoreResult<Published>> {
    async move {
        match &*outcome.await {
            Ok(published) => published
                .get(index)
                .cloned()
                .ok_or_else(|| StoreError::Internal("the store answered for fewer records than it was given".into())),
            Err(err) => Err(err.clone()),
        }
    }
    .boxed()
}
