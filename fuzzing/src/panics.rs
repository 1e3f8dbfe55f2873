//! Panics anywhere in the process, counted. A panic inside a server task (a PostgreSQL
//! connection, a spawned DataFusion stream) is caught by tokio and would otherwise pass unseen
//! by a property test; libFuzzer's own hook aborts on any panic, so the fuzz targets need none.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, Once};

static PANICS: AtomicUsize = AtomicUsize::new(0);
static LAST: Mutex<Option<String>> = Mutex::new(None);

/// Counts every panic from now on (the previous hook still prints it).
pub fn watch_panics() -> PanicWatch {
    static HOOK: Once = Once::new();
    HOOK.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            PANICS.fetch_add(1, Ordering::SeqCst);
            *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(info.to_string());
            previous(info);
        }));
    });
    PanicWatch {
        seen: PANICS.load(Ordering::SeqCst),
    }
}

/// The panic count when the watch started.
pub struct PanicWatch {
    seen: usize,
}

impl PanicWatch {
    /// The last panic's message if any panic happened since the watch started.
    pub fn panicked(&self) -> Option<String> {
        (PANICS.load(Ordering::SeqCst) != self.seen).then(|| {
            LAST.lock()
                .unwrap_or_else(|e| e.into_inner())
                .clone()
                .unwrap_or_default()
        })
    }
}
