/// malloc arenas for the hub: few threads allocate at once, and more arenas
/// only kept more freed memory (see `ferry_malloc::bound_arenas`).
const ARENAS: i32 = 2;

fn main() -> std::process::ExitCode {
    ferry_malloc::bound_arenas(ARENAS);
    ferry_hub::cli::main()
}
