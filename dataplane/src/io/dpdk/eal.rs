//! DPDK's Environment Abstraction Layer: started once per process.
//!
//! `rte_eal_init` may run only once in a process (a second call fails or, in
//! some versions, corrupts state), so it is guarded by a `OnceLock`: the first
//! open starts it with the profile's arguments; a later open with the same
//! arguments shares it; different arguments get a typed error. A failed start
//! cannot be retried either, so its message is kept and returned again.
//!
//! `rte_eal_init` pins the calling thread to the first lcore's CPU; threads
//! the caller spawns later (the workers) would inherit that. We restore the
//! caller's CPU affinity afterwards and leave placement to the control plane.

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use super::ffi;
use crate::io::port::IoError;

static EAL: OnceLock<Result<Vec<String>, String>> = OnceLock::new();

/// rte_errno with its message.
pub fn rte_error() -> String {
    // SAFETY: plain reads of DPDK's thread-local errno and its static string.
    unsafe {
        let e = ffi::baton_errno();
        let msg = ffi::rte_strerror(e);
        let msg = if msg.is_null() {
            "unknown".into()
        } else {
            CStr::from_ptr(msg).to_string_lossy()
        };
        format!("{msg} (rte_errno {e})")
    }
}

/// Starts the EAL with `args` (without the program name), once per process.
pub fn init(args: &[String]) -> Result<(), IoError> {
    let mut started_now = false;
    let r = EAL.get_or_init(|| {
        started_now = true;
        start(args)
    });
    match r {
        Ok(used) if started_now || used == args => Ok(()),
        Ok(_) => Err(IoError::EalAlreadyInitialised),
        Err(msg) => Err(IoError::EalInit(msg.clone())),
    }
}

/// Whether the EAL is up in this process.
pub fn is_running() -> bool {
    matches!(EAL.get(), Some(Ok(_)))
}

fn start(args: &[String]) -> Result<Vec<String>, String> {
    let mut argv_owned = Vec::with_capacity(args.len() + 1);
    argv_owned.push(CString::new("baton").expect("no NUL"));
    for a in args {
        argv_owned.push(
            CString::new(a.as_str()).map_err(|_| format!("EAL argument {a:?} contains NUL"))?,
        );
    }
    // EAL keeps pointers into argv (and getopt permutes it): both live for
    // the rest of the process.
    let argv_owned: &'static [CString] = Box::leak(argv_owned.into_boxed_slice());
    let argv: &'static mut [*mut libc::c_char] = Box::leak(
        argv_owned
            .iter()
            .map(|c| c.as_ptr() as *mut libc::c_char)
            .chain(std::iter::once(std::ptr::null_mut()))
            .collect::<Vec<_>>()
            .into_boxed_slice(),
    );
    // SAFETY: cpu_set_t is plain old data; zero is valid.
    let mut cpus: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: querying this thread's affinity into a live cpu_set_t.
    let have_cpus =
        unsafe { libc::sched_getaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &mut cpus) }
            == 0;
    // SAFETY: argv is a valid, NUL-terminated-string array of argc entries
    // that outlives the process; this runs once (OnceLock).
    // argv[argc] is NULL, as in C.
    let rc = unsafe { ffi::rte_eal_init(argv_owned.len() as libc::c_int, argv.as_mut_ptr()) };
    if rc < 0 {
        return Err(format!("rte_eal_init({}): {}", args.join(" "), rte_error()));
    }
    if have_cpus {
        // SAFETY: restoring the affinity read above.
        unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &cpus) };
    }
    Ok(args.to_vec())
}

thread_local! {
    static REGISTERED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    static UNREGISTER: std::cell::RefCell<Option<Unregister>> = const { std::cell::RefCell::new(None) };
}

struct Unregister;

impl Drop for Unregister {
    fn drop(&mut self) {
        // SAFETY: runs on the thread that registered, at thread exit.
        unsafe { ffi::rte_thread_unregister() };
    }
}

/// The calling thread's EAL lcore id, if it has one (EAL threads, and
/// worker threads once registered).
pub fn current_lcore() -> Option<u32> {
    // SAFETY: reads a thread-local of DPDK's.
    let (id, any) = unsafe { (ffi::baton_lcore_id(), ffi::baton_lcore_id_any()) };
    (id != any).then_some(id)
}

/// Gives the calling (worker) thread an EAL lcore id, so that mbuf
/// allocation and free, in our code and inside the PMD, use that lcore's
/// mempool cache instead of the shared ring. Cheap after the first call.
pub fn register_thread() {
    if REGISTERED.with(|r| r.get()) {
        return;
    }
    REGISTERED.with(|r| r.set(true));
    // SAFETY: reading the thread's lcore id.
    if unsafe { ffi::baton_lcore_id() != ffi::baton_lcore_id_any() } {
        return; // an EAL thread already (the main lcore)
    }
    // SAFETY: the EAL is up (queues exist only after `init`).
    if unsafe { ffi::rte_thread_register() } == 0 {
        UNREGISTER.with(|u| *u.borrow_mut() = Some(Unregister));
    }
    // On failure (no free lcore id) the thread runs without a cache: slower,
    // still correct.
}
