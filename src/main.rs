//! The `ringway` binary: a thin CLI over the library.

use mimalloc::MiMalloc;

#[global_allocator]
static GLOBAL: MiMalloc = MiMalloc;

fn main() {
    let code = match ringway::cli::parse_args() {
        ringway::cli::Command::Run { config } => ringway::runtime::run(config),
        ringway::cli::Command::Check(args) => ringway::cli::check(args),
        ringway::cli::Command::Explain(args) => ringway::cli::explain(args),
        ringway::cli::Command::Version => {
            print!(
                "{}",
                ringway::cli::version_text(&ringway::runtime::probe_driver())
            );
            0
        }
    };
    std::process::exit(code);
}
