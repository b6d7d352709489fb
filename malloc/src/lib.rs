//! glibc's malloc gives each thread that allocates under contention an arena
//! of its own (up to 8 per core) and keeps what is freed in it. The hub and
//! the agent free buffers on other threads than those that filled them
//! (tokio workers, blocking threads), so their peak RSS ran at about twice
//! their live data: on the 1 GiB benchmark the hub peaked at 143-153 MiB
//! with the default and at 71-87 MiB with two arenas, for the same CPU time.

/// Arenas kept when the operator has not chosen (`MALLOC_ARENA_MAX`).
const ARENAS: i32 = 2;

/// Bounds malloc's arenas to two unless `MALLOC_ARENA_MAX` says otherwise.
/// Call first thing in `main`, before any other thread starts. A no-op
/// where the C library is not glibc.
pub fn bound_arenas() {
    if std::env::var_os("MALLOC_ARENA_MAX").is_some() {
        return;
    }
    set_arena_max(ARENAS);
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
#[allow(unsafe_code)]
fn set_arena_max(arenas: i32) {
    // SAFETY: mallopt only changes a malloc tunable; it is called before
    // other threads exist, and a refusal (0) just leaves the default.
    let _ = unsafe { libc::mallopt(libc::M_ARENA_MAX, arenas) };
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn set_arena_max(_arenas: i32) {}
