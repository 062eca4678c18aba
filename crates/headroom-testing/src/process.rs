//! A child process that a test started, stopped by its PID when dropped.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};

/// A child process killed (by its PID) and reaped when dropped, its stdout
/// and stderr in a log file.
#[derive(Debug)]
pub struct Process {
    child: Option<Child>,
    name: String,
    log: PathBuf,
}

impl Process {
    /// Starts `program` with `args`, stdout and stderr going to `log`.
    pub fn spawn(program: &Path, args: &[String], log: &Path) -> Process {
        let out = std::fs::File::create(log).unwrap();
        let child = Command::new(program)
            .args(args)
            .stdin(Stdio::null())
            .stdout(out.try_clone().unwrap())
            .stderr(out)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Process { child: Some(child), name: program.display().to_string(), log: log.to_owned() }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.as_ref().map(Child::id).unwrap_or(0)
    }

    /// Kills the process (SIGKILL to its PID) and waits for it.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Whether the process has exited (with its status).
    pub fn exited(&mut self) -> Option<ExitStatus> {
        self.child.as_mut().and_then(|c| c.try_wait().ok().flatten())
    }

    /// Everything the process printed so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last 4 kB of what the process printed, headed by its name and log file.
    pub fn log_tail(&self) -> String {
        let text = self.log();
        let start = text.len().saturating_sub(4096);
        let start = (start..text.len()).find(|&i| text.is_char_boundary(i)).unwrap_or(text.len());
        format!("--- {} ({}) ---\n{}", self.name, self.log.display(), &text[start..])
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}
