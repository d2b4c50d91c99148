//! The presets `pipelock generate config` prints, as commented YAML files compiled into the
//! binary. The balanced one is also what `pipelock run` uses without `--config`.

/// A starting configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Preset {
    /// Block everything detected; only allow-listed destinations are reachable.
    Strict,
    /// Block high and critical findings, warn on the rest (the default).
    Balanced,
    /// Log everything, block nothing.
    Audit,
}

/// The commented YAML of `preset`; it loads back through the strict loader unchanged.
#[must_use]
pub fn preset_yaml(preset: Preset) -> &'static str {
    match preset {
        Preset::Strict => include_str!("presets/strict.yaml"),
        Preset::Balanced => include_str!("presets/balanced.yaml"),
        Preset::Audit => include_str!("presets/audit.yaml"),
    }
}
