// SPDX-License-Identifier: Apache-2.0
//! `vmctl`: the command line of `vmctld`. See `docs/vmctl.md` or `vmctl man`.

fn main() -> std::process::ExitCode {
    vmctl::cli::main()
}
