// mimalloc: glibc's malloc cost the daemon about a sixth of its CPU (arena consolidation, cross-thread frees between
// the runtime and the store thread, heap trimming page faults); see the README's benchmark notes.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    ota_relay::cli::main()
}
