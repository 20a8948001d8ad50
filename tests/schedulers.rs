//! The examples for clusters, run: `scripts/slurm-test.sh` starts munged, slurmctld and slurmd
//! on this machine, submits `examples/slurm/valuelens-array.sbatch` as an array of three tasks
//! with the merge job depending on it, and compares the merged results with a one-process run's
//! byte for byte, then stops the daemons (it needs root to start them; elsewhere it is skipped
//! with a printed line). `scripts/kubernetes-test.sh` validates
//! `examples/kubernetes/indexed-job.yaml` against the Kubernetes schema offline and runs its
//! pods' commands here with `JOB_COMPLETION_INDEX` set, with the same comparison.

mod common;

use std::process::Command;

/// What the jobs read, fetched before they start side by side.
fn fetch_inputs() {
    common::default_model_path();
    valuelens::via::setup::via_csv(None).expect("the VIA CSV is set up");
}

/// One script at a time: each runs shards side by side already.
static ONE_AT_A_TIME: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn script(name: &str) -> std::process::ExitStatus {
    let _turn = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    fetch_inputs();
    Command::new("bash")
        .arg(name)
        .arg(env!("CARGO_BIN_EXE_valuelens"))
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("bash runs")
}

#[test]
fn the_kubernetes_indexed_job_validates_and_its_pods_give_the_one_process_results() {
    let status = script("scripts/kubernetes-test.sh");
    assert!(
        status.success(),
        "scripts/kubernetes-test.sh failed ({status}); its output says why"
    );
}

#[test]
fn a_slurm_array_and_its_dependent_merge_give_the_one_process_results() {
    let status = script("scripts/slurm-test.sh");
    match status.code() {
        Some(0) => {}
        Some(77) => println!("skipped: the Slurm test needs root to start its daemons"),
        _ => panic!("scripts/slurm-test.sh failed ({status}); its output says why"),
    }
}
