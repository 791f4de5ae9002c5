//! Child processes that cannot outlive the process that started them.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

/// A started control-plane process with its log file, and what it was started with, so that
/// it can be started again in place.
pub(crate) struct Process {
    name: String,
    bin: PathBuf,
    args: Vec<String>,
    child: Child,
    log: PathBuf,
}

impl Process {
    /// Starts `bin args…` with stdout and stderr in `<dir>/<name>.log`.
    pub(crate) fn spawn(name: &str, bin: &Path, args: &[String], dir: &Path) -> Result<Self> {
        let log = dir.join(format!("{name}.log"));
        let out = File::create(&log).with_context(|| format!("creating {}", log.display()))?;
        let child = start(bin, args, out)?;
        tracing::debug!(name, pid = child.id(), "Started");
        Ok(Self {
            name: name.to_string(),
            bin: bin.to_path_buf(),
            args: args.to_vec(),
            child,
            log,
        })
    }

    /// Replaces the trailing `old` arguments (the extra flags it was started with) by `new`,
    /// for the next [`Process::start_again`].
    pub(crate) fn replace_flags(&mut self, old: &[String], new: &[String]) {
        if self.args.ends_with(old) {
            self.args.truncate(self.args.len() - old.len());
        }
        self.args.extend(new.iter().cloned());
    }

    /// Starts the stopped process again with its executable and arguments, its output
    /// appended to the same log.
    pub(crate) fn start_again(&mut self) -> Result<()> {
        let out = std::fs::OpenOptions::new()
            .append(true)
            .open(&self.log)
            .with_context(|| format!("opening {}", self.log.display()))?;
        self.child = start(&self.bin, &self.args, out)?;
        tracing::debug!(name = self.name, pid = self.child.id(), "Restarted");
        Ok(())
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The exit status, if the process has exited.
    pub(crate) fn exited(&mut self) -> Result<Option<ExitStatus>> {
        Ok(self.child.try_wait()?)
    }

    /// The last `lines` lines of the log.
    pub(crate) fn log_tail(&self, lines: usize) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let all: Vec<&str> = text.lines().collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// Sends `signal` (SIGSTOP, SIGCONT) to the process.
    pub(crate) fn signal(&self, signal: i32) {
        if let Ok(pid) = i32::try_from(self.child.id()) {
            // SAFETY: kill(2) with a PID we own (our unreaped child) has no memory effects.
            unsafe { libc::kill(pid, signal) };
        }
    }

    /// SIGTERM, then SIGKILL if it has not exited within `grace`; says whether SIGKILL was
    /// needed.
    pub(crate) fn stop(&mut self, grace: Duration) -> bool {
        if let Ok(Some(_)) = self.child.try_wait() {
            return false;
        }
        let Ok(pid) = i32::try_from(self.child.id()) else {
            let _ = self.child.kill();
            let _ = self.child.wait();
            return true;
        };
        // SAFETY: kill(2) with a PID we own (our unreaped child) has no memory effects.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return false;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        true
    }
}

/// Starts `bin args…` with its output in `out`; it dies with the process that started it.
pub(crate) fn start(bin: &Path, args: &[String], out: File) -> Result<Child> {
    let mut cmd = Command::new(bin);
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .env("NO_PROXY", "127.0.0.1,localhost");
    spawn_from_keeper(cmd).with_context(|| format!("starting {}", bin.display()))
}

/// Spawns `cmd` from one thread that lives as long as the process.
///
/// Children get SIGKILL when their parent *thread* exits (PR_SET_PDEATHSIG), so the spawning
/// thread must outlive every test and runtime; then a test binary that exits without dropping a
/// shared cluster still leaves no etcd or kube-apiserver behind.
fn spawn_from_keeper(cmd: Command) -> std::io::Result<Child> {
    type Job = (Command, mpsc::Sender<std::io::Result<Child>>);
    static KEEPER: OnceLock<Mutex<mpsc::Sender<Job>>> = OnceLock::new();
    let keeper = KEEPER.get_or_init(|| {
        let (tx, rx) = mpsc::channel::<Job>();
        std::thread::Builder::new()
            .name("localcluster-keeper".into())
            .spawn(move || {
                for (mut cmd, reply) in rx {
                    let _ = reply.send(spawn_with_parent_death_signal(&mut cmd));
                }
                // The channel is in a static and never closes: park so the thread stays.
                loop {
                    std::thread::park();
                }
            })
            .expect("spawning the localcluster keeper thread");
        Mutex::new(tx)
    });
    let (tx, rx) = mpsc::channel();
    keeper
        .lock()
        .map_err(|_| std::io::Error::other("keeper lock poisoned"))?
        .send((cmd, tx))
        .map_err(|_| std::io::Error::other("keeper thread gone"))?;
    rx.recv()
        .map_err(|_| std::io::Error::other("keeper thread gone"))?
}

fn spawn_with_parent_death_signal(cmd: &mut Command) -> std::io::Result<Child> {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs between fork and exec and only calls prctl(2), which is
    // async-signal-safe.
    unsafe {
        cmd.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    cmd.spawn()
}
