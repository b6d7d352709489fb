//! glibc malloc tuned for Ferry's long-running processes, which move data
//! through buffers of a few MiB that are freed on other threads than those
//! that filled them (tokio workers, blocking threads).

/// Allocations at least this large get their own mapping (`MALLOC_MMAP_THRESHOLD_`).
const MMAP_THRESHOLD: i32 = 16 << 20;
/// Free memory at a heap's top kept rather than returned (`MALLOC_TRIM_THRESHOLD_`).
const TRIM_THRESHOLD: i32 = 64 << 20;

/// Bounds malloc's arenas to `arenas`. glibc gives each thread that
/// allocates under contention an arena of its own (up to 8 per core) and
/// keeps what is freed in it, so peak RSS ran at about twice the live data:
/// on the 1 GiB benchmark the hub peaked at 143-153 MiB with the default and
/// at 71-87 MiB with two arenas, for the same CPU time. Too few arenas cost
/// CPU instead, in lock waits, where many threads allocate at once (the
/// agent's 32 readers of small files): see the agent's `main`.
///
/// Call first thing in `main`, before any other thread starts; the
/// operator's `MALLOC_ARENA_MAX` wins. A no-op where the C library is not glibc.
pub fn bound_arenas(arenas: i32) {
    set_unless_chosen("MALLOC_ARENA_MAX", Tunable::ArenaMax, arenas);
}

/// Keeps freed buffers for reuse instead of handing them back to the kernel.
/// By default glibc maps buffers above a moving threshold on their own and
/// returns a heap's free top once it passes twice that threshold, so each
/// MiB buffer comes back as fresh pages the kernel faults in and zeroes:
/// restoring 1 GiB cost the agent about 90,000 page faults and a tenth of
/// its CPU. With fixed thresholds (own mappings only from 16 MiB, trimming
/// only past 64 MiB free) it took about 14,000 and 8 % less CPU, for 5 MiB
/// more RSS. For work that streams buffers through with little held at
/// once (a restore); where much is in flight (a backup) the kept memory
/// raised the agent's peak from about 120 to 135-150 MiB, and the hub's
/// restore peak from about 107 to 121-137 MiB, so those keep the default.
///
/// Call before any other thread starts; the operator's variables win.
pub fn keep_freed_buffers() {
    set_unless_chosen(
        "MALLOC_MMAP_THRESHOLD_",
        Tunable::MmapThreshold,
        MMAP_THRESHOLD,
    );
    set_unless_chosen(
        "MALLOC_TRIM_THRESHOLD_",
        Tunable::TrimThreshold,
        TRIM_THRESHOLD,
    );
}

/// Hands the free memory of every arena back to the kernel now. For the
/// moment between phases, when a phase's buffers are freed and the next
/// allocates afresh: glibc keeps a heap's free top up to a threshold that
/// grows with the largest buffer freed (up to 64 MiB), and never returns
/// free pages inside a heap on its own.
pub fn release_free_memory() {
    trim();
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn trim() {
    // SAFETY: malloc_trim only releases free memory; it takes the arenas'
    // own locks and may be called from any thread at any time.
    let _ = unsafe { libc::malloc_trim(0) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

fn set_unless_chosen(variable: &str, tunable: Tunable, value: i32) {
    if std::env::var_os(variable).is_none() {
        set(tunable, value);
    }
}

#[derive(Clone, Copy)]
enum Tunable {
    ArenaMax,
    MmapThreshold,
    TrimThreshold,
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set(tunable: Tunable, value: i32) {
    let param = match tunable {
        Tunable::ArenaMax => libc::M_ARENA_MAX,
        Tunable::MmapThreshold => libc::M_MMAP_THRESHOLD,
        Tunable::TrimThreshold => libc::M_TRIM_THRESHOLD,
    };
    // SAFETY: mallopt only changes a malloc tunable; it is called before
    // other threads exist, and a refusal (0) just leaves the default.
    let _ = unsafe { libc::mallopt(param, value) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set(_tunable: Tunable, _value: i32) {}
