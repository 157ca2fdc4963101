//! The `ringway` binary: a thin CLI over the library.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    // Interim argument handling until the clap CLI lands: `ringway [run] [-c FILE]`.
    let args: Vec<String> = std::env::args().skip(1).collect();
    let config = args
        .iter()
        .position(|a| a == "-c" || a == "--config")
        .and_then(|i| args.get(i + 1))
        .map(std::path::PathBuf::from);
    std::process::exit(ringway::runtime::run(config));
}
