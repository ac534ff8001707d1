//! Standard output for every command: when the reader goes away (`polyprov guide --list | head`),
//! the process ends quietly with exit code 141, as a Unix tool killed by SIGPIPE reports in a
//! shell, instead of panicking in `println!`.

use std::io::Write;

/// Exit code when standard output's reader has closed the pipe (128 + SIGPIPE).
pub const EXIT_BROKEN_PIPE: i32 = 141;

/// Writes to standard output; ends the process on a closed pipe or a failed write.
pub fn write(args: std::fmt::Arguments<'_>) {
    let mut out = std::io::stdout().lock();
    if let Err(e) = out.write_fmt(args) {
        if e.kind() == std::io::ErrorKind::BrokenPipe {
            std::process::exit(EXIT_BROKEN_PIPE);
        }
        eprintln!("error: cannot write to standard output: {e}");
        std::process::exit(1);
    }
}

/// `println!` that ends quietly on a closed pipe.
macro_rules! outln {
    () => { $crate::out::write(format_args!("\n")) };
    ($($t:tt)*) => { $crate::out::write(format_args!("{}\n", format_args!($($t)*))) };
}

pub(crate) use outln;
