//! The fast path's flow map as the engine's `FlowOffload` (STUB).

use crate::offload::{FlowOffload, OffloadError, OffloadFlow, OffloadKey, OffloadSeen};

/// One worker's handle on the XDP program's flow map.
pub struct FlowTable {
    _private: (),
}

impl FlowOffload for FlowTable {
    fn insert(&mut self, key: &OffloadKey, flow: &OffloadFlow) -> Result<(), OffloadError> {
        let _ = (key, flow);
        Err(OffloadError::Full)
    }
    fn remove(&mut self, key: &OffloadKey) -> bool {
        let _ = key;
        false
    }
    fn read(&mut self, key: &OffloadKey) -> Option<OffloadSeen> {
        let _ = key;
        None
    }
}
