//! `talforge secrets gen`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use talforge_builder::output::{Overwrite, SECRET_MODE, write_atomic};
use talforge_builder::secrets;

#[derive(Debug, Subcommand)]
pub enum SecretsCommand {
    /// Generate a secrets bundle like `talosctl gen secrets` (written with mode 0600).
    Gen(GenArgs),
}

#[derive(Debug, Args)]
pub struct GenArgs {
    /// Where to write the bundle.
    #[arg(short = 'o', long = "out", value_name = "FILE", default_value = "secrets.yaml")]
    pub out: PathBuf,
    /// Talos version the bundle is for (key types and encodings follow its contract).
    #[arg(long, value_name = "V", default_value = talforge_builder::quirks::DEFAULT_TALOS_VERSION)]
    pub talos_version: String,
    /// Overwrite an existing file.
    #[arg(long)]
    pub force: bool,
}

pub fn run(c: SecretsCommand) -> anyhow::Result<ExitCode> {
    match c {
        SecretsCommand::Gen(a) => {
            let version = a.talos_version.parse().map_err(|e: String| anyhow::anyhow!("--talos-version: {e}"))?;
            let quirks = talforge_builder::quirks::Quirks::new(&version)?;
            let overwrite = if a.force { Overwrite::Replace } else { Overwrite::Refuse };
            if overwrite == Overwrite::Refuse && a.out.exists() {
                return Err(talforge_builder::Error::Exists { path: a.out.clone() }.into());
            }
            let bundle = secrets::generate(&quirks)?;
            write_atomic(&a.out, bundle.to_yaml().as_bytes(), SECRET_MODE, overwrite)?;
            eprintln!("wrote secrets bundle {} (mode 0600)", a.out.display());
            Ok(ExitCode::SUCCESS)
        }
    }
}
