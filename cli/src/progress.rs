//! A progress bar for long runs, drawn by a small watcher process.
//!
//! The parent is busy inside Pool calls (and must stay single-threaded so the Pool may fork
//! replacement workers), so it cannot redraw a bar itself. The workers bump a [`Progress`] in
//! shared memory; a watcher process forked for the bar reads the sum ten times a second and
//! draws it on stderr. No bar when stderr is not a terminal, or under `--json`.

use std::io::IsTerminal;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};
use mproc::{Flag, Process, Progress, RawValue};

/// A running bar; [`Bar::finish`] clears it.
pub struct Bar {
    watcher: Option<Process>,
    done: Flag,
    stage: RawValue<u64>,
}

impl Bar {
    /// A bar for `total` steps of `progress`, labelled by `stages[stage]` (see [`Bar::stage`]).
    /// Hidden (a no-op) unless `show` and stderr is a terminal.
    pub fn start(progress: &Progress, total: u64, stages: Vec<String>, show: bool) -> crate::Result<Bar> {
        let done = Flag::new()?;
        let stage = RawValue::new(0u64)?;
        let watcher = if show && std::io::stderr().is_terminal() && total > 0 {
            let (p, d, st) = (progress.clone(), done.clone(), stage.clone());
            Some(Process::spawn(move || draw(&p, total, &stages, &d, &st))?)
        } else {
            None
        };
        Ok(Bar { watcher, done, stage })
    }

    /// Shows `stages[i]` beside the bar from now on.
    pub fn stage(&self, i: usize) {
        self.stage.store(i as u64);
    }

    /// Clears the bar and waits for its watcher.
    pub fn finish(mut self) {
        self.done.set();
        if let Some(mut w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

impl Drop for Bar {
    fn drop(&mut self) {
        self.done.set();
        if let Some(mut w) = self.watcher.take() {
            let _ = w.join();
        }
    }
}

/// The watcher: redraws every 100 ms until `done`, then clears the line.
fn draw(progress: &Progress, total: u64, stages: &[String], done: &Flag, stage: &RawValue<u64>) {
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_bar} {percent:>3}% {msg}")
            .unwrap_or_else(|_| ProgressStyle::default_bar()),
    );
    while !done.is_set() {
        bar.set_position(progress.total().min(total));
        if let Some(s) = stages.get(stage.load() as usize) {
            bar.set_message(s.clone());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    bar.finish_and_clear();
}
