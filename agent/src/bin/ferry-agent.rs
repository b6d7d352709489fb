/// malloc arenas for the agent. Its 32 small-file readers, the scan and the
/// sealers allocate and free at once; with two arenas they queued on the
/// arena locks. Backing up 50,000 small files took 1.7-9 % less agent CPU
/// with three arenas than with two (four A/B runs of 4-8 pairs). Four
/// arenas saved a little more, but the 1 GiB backup then peaked at 144-166
/// MiB; with three it peaks at 122-141 (see the queues in `backup`).
const ARENAS: i32 = 3;

fn main() -> std::process::ExitCode {
    ferry_malloc::bound_arenas(ARENAS);
    ferry_agent::cli::main()
}
