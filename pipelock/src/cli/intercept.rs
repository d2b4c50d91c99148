//! `pipelock detach` and `pipelock status`: manage the eBPF attachments pinned under a pin
//! root from any process, whether or not a Pipelock is running. (`pipelock attach`, which
//! keeps serving, is wired with the transparent listener.)

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::EXIT_OK;
use crate::intercept::{self, DEFAULT_PIN_PATH};

#[derive(Debug, Args)]
pub struct DetachArgs {
    /// Path of the cgroup v2 directory of the application.
    #[arg(long)]
    cgroup: PathBuf,
    /// Pin root on bpffs the programs were attached under (config `intercept.pin_path`).
    #[arg(long, value_name = "P", default_value = DEFAULT_PIN_PATH)]
    pin_path: PathBuf,
}

#[derive(Debug, Args)]
pub struct StatusArgs {
    /// Pin root on bpffs (config `intercept.pin_path`).
    #[arg(long, value_name = "P", default_value = DEFAULT_PIN_PATH)]
    pin_path: PathBuf,
    /// Print the status as JSON.
    #[arg(long)]
    json: bool,
}

pub fn detach(args: &DetachArgs) -> anyhow::Result<u8> {
    intercept::detach(&args.pin_path, &args.cgroup).with_context(|| {
        format!(
            "cannot detach Pipelock from cgroup {}",
            args.cgroup.display()
        )
    })?;
    println!(
        "detached Pipelock from cgroup {} (pin root {})",
        args.cgroup.display(),
        args.pin_path.display()
    );
    Ok(EXIT_OK)
}

pub fn status(args: &StatusArgs) -> anyhow::Result<u8> {
    let status = intercept::status(&args.pin_path).with_context(|| {
        format!(
            "cannot read the interception status under {}",
            args.pin_path.display()
        )
    })?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).context("cannot render the status as JSON")?
        );
    } else {
        print!("{status}");
    }
    Ok(EXIT_OK)
}
