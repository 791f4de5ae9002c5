//! `make run`'s demo, on its own control plane: every command it prints is run here, in
//! order, exactly as printed, and shows what the demo says it shows.

use std::path::Path;
use std::process::Command;

use localcluster::demo::{Demo, Expect};

#[tokio::test(flavor = "multi_thread")]
async fn every_printed_command_of_the_demo_shows_what_it_says() {
    let dir = localcluster::workspace_root().join("target/localcluster/e2e_demo");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let nsguard = Path::new(env!("CARGO_BIN_EXE_nsguard"));
    let demo = Demo::start(&dir, nsguard).await.expect("starting the demo");
    let text = demo.instructions(nsguard);
    let env = demo.env(nsguard);
    for step in &demo.steps {
        assert!(
            text.contains(&step.command),
            "{} is not printed",
            step.command
        );
        let out = Command::new("bash")
            .args(["-c", &step.command])
            .envs(env.iter().map(|(k, v)| (k, v)))
            .output()
            .unwrap();
        let (stdout, stderr) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        let what = format!(
            "{}\n$ {}\nstdout: {stdout}\nstderr: {stderr}",
            step.title, step.command
        );
        match step.expect {
            Expect::Denied(text) => {
                assert!(!out.status.success(), "not denied: {what}");
                assert!(stderr.contains("denied the request"), "{what}");
                assert!(stderr.contains(text), "{what}");
            }
            Expect::Warned(text) => {
                assert!(out.status.success(), "{what}");
                assert!(
                    stderr.contains("Warning:") && stderr.contains(text),
                    "{what}"
                );
            }
            Expect::Succeeds(text) => {
                assert!(out.status.success(), "{what}");
                assert!(stdout.contains(text), "{what}");
            }
        }
    }
}
