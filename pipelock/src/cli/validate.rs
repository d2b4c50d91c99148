//! `pipelock validate`: load a config strictly and say what it enables, or print the first
//! error with file, line, column and field.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use super::EXIT_OK;
use crate::config;

#[derive(Debug, Args)]
pub struct ValidateArgs {
    /// Config file to check, or `-` to read it from standard input.
    #[arg(short, long)]
    config: PathBuf,
}

pub fn validate(args: &ValidateArgs) -> anyhow::Result<u8> {
    let (config, origin) = if args.config.as_os_str() == "-" {
        let mut source = String::new();
        std::io::stdin()
            .read_to_string(&mut source)
            .context("cannot read the config from standard input")?;
        (config::load_str(&source, "<stdin>")?, "<stdin>".to_string())
    } else {
        (
            config::load_file(&args.config)?,
            args.config.display().to_string(),
        )
    };
    println!("{origin}: valid");
    for (key, value) in config.summary() {
        println!("  {key}: {value}");
    }
    Ok(EXIT_OK)
}
