//! Which queued messages were written to their device's socket.
//!
//! Kept in memory, not in the database: this backend is one node, so the
//! node knows; writing the mark cost an UPDATE per message (measured: a
//! tenth of the writer's time). After a restart, unacknowledged messages
//! read `queued` until they are sent again — which is then true.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use relayhub_core::bus::{Bus, Delivery};
use relayhub_core::devices::DeviceEvent;
use relayhub_core::ids::DevicePk;
use relayhub_relay::model::MessageStatus;

/// Per device, the highest `seq` written to its socket.
#[derive(Clone, Default)]
pub(crate) struct SentMarks(Arc<Mutex<HashMap<i64, i64>>>);

impl SentMarks {
    fn lock(&self) -> MutexGuard<'_, HashMap<i64, i64>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub(crate) fn mark(&self, device: DevicePk, through: i64) {
        let mut marks = self.lock();
        let entry = marks.entry(device.0).or_insert(through);
        *entry = (*entry).max(through);
    }

    /// Forgets the marks of devices as they are unbound.
    pub(crate) fn watch(&self, bus: &Bus) {
        let marks = self.clone();
        bus.subscribe::<DeviceEvent>(move |delivery| {
            if let Delivery::Event(DeviceEvent::Unbound { device }) = delivery {
                marks.lock().remove(&device.0);
            }
        });
    }

    /// The status of message `seq` whose stored status is `stored`.
    pub(crate) fn status(&self, device: DevicePk, seq: i64, stored: MessageStatus) -> MessageStatus {
        match stored {
            MessageStatus::Queued if self.lock().get(&device.0).is_some_and(|&through| seq <= through) => {
                MessageStatus::Sent
            }
            other => other,
        }
    }
}
