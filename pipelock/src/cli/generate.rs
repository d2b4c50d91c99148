//! `pipelock generate config`: print (or write) the commented config file of a preset.

use std::fs::OpenOptions;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::{preset_name, EXIT_OK};
use crate::config::{self, Preset};

#[derive(Debug, Args)]
pub struct GenerateConfigArgs {
    /// Which preset: strict, balanced or audit.
    #[arg(long, value_enum, default_value = "balanced")]
    preset: Preset,
    /// Write to this file (created with mode 0600) instead of standard output.
    #[arg(short, long)]
    output: Option<PathBuf>,
    /// Overwrite the output file if it exists.
    #[arg(long, requires = "output")]
    force: bool,
}

pub fn generate_config(args: &GenerateConfigArgs) -> anyhow::Result<u8> {
    let yaml = config::preset_yaml(args.preset);
    match &args.output {
        None => {
            let mut stdout = std::io::stdout().lock();
            stdout
                .write_all(yaml.as_bytes())
                .and_then(|()| stdout.flush())
                .context("cannot write to standard output")?;
        }
        Some(path) => {
            let mut options = OpenOptions::new();
            options.write(true).mode(0o600);
            if args.force {
                options.create(true).truncate(true);
            } else {
                options.create_new(true);
            }
            let mut file = options.open(path).with_context(|| {
                format!(
                    "cannot create {} (use --force to overwrite an existing file)",
                    path.display()
                )
            })?;
            file.write_all(yaml.as_bytes())
                .with_context(|| format!("cannot write {}", path.display()))?;
            eprintln!(
                "wrote the {} preset to {}",
                preset_name(args.preset),
                path.display()
            );
        }
    }
    Ok(EXIT_OK)
}
