//! `talforge build` and `talforge verify`.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Args;
use talforge_builder::build::{BuildOptions, build, manifest::Manifest};
use talforge_builder::plan::{PlanOverrides, plan_cluster};
use talforge_builder::release::{Cache, ReleaseSource};
use talforge_builder::spec::cluster::OutputKind;
use talforge_builder::tool::ToolRunner;

#[derive(Debug, Args)]
pub struct BuildArgs {
    /// Cluster file.
    #[arg(short = 'f', long = "file", value_name = "FILE")]
    pub file: Option<PathBuf>,
    /// Release source overriding `talos.source`: a release directory (`usr/install/<arch>/...`,
    /// `extensions/<name>/`), an OCI image layout directory, or a registry prefix (ghcr.io/siderolabs).
    #[arg(long, value_name = "DIR|REGISTRY")]
    pub release: Option<String>,
    /// Output folder (default out/<cluster>); images go to OUT/images/<profile>-<schematic>/.
    #[arg(short = 'o', long = "out", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Output kinds to build instead of the cluster file's `outputs` (metal, iso, uki, pxe, installer, qcow2).
    #[arg(long = "kind", value_name = "KINDS", value_delimiter = ',')]
    pub kinds: Vec<String>,
    /// Only the images of these profiles (repeatable).
    #[arg(long = "profile", value_name = "PROFILE")]
    pub profiles: Vec<String>,
    /// Never use the network: image digests come from talforge.lock, blobs from the cache (exit 3 if missing).
    #[arg(long)]
    pub offline: bool,
    /// Accept new digests for release or extension tags that moved since talforge.lock was written.
    #[arg(long)]
    pub update_lock: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// A build's output folder (holding manifest.json).
    pub dir: PathBuf,
    /// Never use the network (the rebuild takes images from the cache).
    #[arg(long)]
    pub offline: bool,
}

/// `SOURCE_DATE_EPOCH`, the one place the build reads its clock from.
fn epoch_from_env() -> anyhow::Result<Option<u64>> {
    match std::env::var("SOURCE_DATE_EPOCH") {
        Ok(v) => Ok(Some(
            v.trim()
                .parse()
                .map_err(|_| anyhow::anyhow!("SOURCE_DATE_EPOCH: expected seconds since 1970; found {v:?}"))?,
        )),
        Err(_) => Ok(None),
    }
}

fn kinds(list: &[String]) -> anyhow::Result<Option<Vec<OutputKind>>> {
    if list.is_empty() {
        return Ok(None);
    }
    let mut out = Vec::new();
    for k in list {
        out.push(OutputKind::parse(k).ok_or_else(|| {
            anyhow::anyhow!("--kind: expected one of metal, iso, uki, pxe, installer, qcow2; found {k:?}")
        })?);
    }
    Ok(Some(out))
}

pub fn run_build(a: &BuildArgs, catalog: Option<&Path>) -> anyhow::Result<ExitCode> {
    let file = super::cluster_file(&a.file);
    let cat = super::catalog_for(catalog, &file)?;
    let plan = plan_cluster(&file, &cat, &PlanOverrides::default())?;
    // A cluster file `plan` rejects (a broken patch) is rejected here too, before any release is fetched.
    talforge_builder::machine_config::render::check_configs(&plan)?;
    let opts = BuildOptions {
        out: a.out.clone().unwrap_or_else(|| PathBuf::from("out").join(&plan.cluster)),
        release: match &a.release {
            Some(r) => Some(ReleaseSource::from_cli(r, &std::env::current_dir()?)?),
            None => None,
        },
        kinds: kinds(&a.kinds)?,
        profiles: a.profiles.clone(),
        epoch: epoch_from_env()?,
        cache: Cache::default_root()?,
        offline: a.offline,
        update_lock: a.update_lock,
        build_cache: None,
    };
    let report = build(&plan, &opts, ToolRunner::new)?;
    for art in &report.manifest.artifacts {
        println!("{}  {:>12}  {}", art.sha256, art.size, art.path);
    }
    eprintln!(
        "built {} artifacts for {} images ({} of the pieces from the cache); manifest {}",
        report.manifest.artifacts.len(),
        report.manifest.images.len(),
        report.from_cache,
        report.manifest_path.display()
    );
    Ok(ExitCode::SUCCESS)
}

pub fn run_verify(a: &VerifyArgs, catalog: Option<&Path>) -> anyhow::Result<ExitCode> {
    let recorded = Manifest::load(&a.dir.join("manifest.json"))?;
    let cat = super::catalog_for(catalog, &recorded.cluster_file)?;
    let plan = plan_cluster(&recorded.cluster_file, &cat, &PlanOverrides::default())?;
    let tmp = tempdir_near(&a.dir)?;
    let opts = BuildOptions {
        out: tmp.clone(),
        release: Some(ReleaseSource::from_cli(&recorded.release.source, Path::new("/"))?),
        kinds: None,
        profiles: recorded.images.iter().map(|i| i.profile.clone()).collect(),
        epoch: Some(recorded.epoch),
        cache: Cache::default_root()?,
        offline: a.offline,
        update_lock: false,
        // An empty cache of built pieces: every artifact is really rebuilt (pulled release blobs are reused).
        build_cache: Some(tmp.join(".build-cache")),
    };
    let result = build(&plan, &opts, ToolRunner::new);
    let rebuilt = match result {
        Ok(r) => r.manifest,
        Err(e) => {
            let _ = std::fs::remove_dir_all(&tmp);
            return Err(e.into());
        }
    };
    let _ = std::fs::remove_dir_all(&tmp);
    let mut differences = Vec::new();
    if rebuilt.release != recorded.release {
        differences.push("release inputs changed since the build".to_owned());
    }
    for (old, new) in [(&recorded.profiles, &rebuilt.profiles), (&recorded.overlays, &rebuilt.overlays)] {
        for r in old {
            match new.iter().find(|n| n.name == r.name) {
                Some(n) if n.sha256 != r.sha256 => {
                    differences.push(format!("input {} changed since the build", r.name))
                }
                None => differences.push(format!("input {} is no longer used", r.name)),
                _ => {}
            }
        }
    }
    for art in &recorded.artifacts {
        match rebuilt.artifacts.iter().find(|b| b.path == art.path) {
            Some(b) if b.sha256 == art.sha256 => println!("ok        {}", art.path),
            Some(b) => {
                println!("DIFFERS   {}", art.path);
                differences.push(format!("{}: recorded {} rebuilt {}", art.path, art.sha256, b.sha256));
            }
            None => {
                println!("MISSING   {}", art.path);
                differences.push(format!("{}: not produced by the rebuild", art.path));
            }
        }
        // The files on disk must still be what the manifest says.
        let on_disk = a.dir.join(&art.path);
        match talforge_builder::build::manifest::file_digest(&on_disk) {
            Ok((_, sha)) if sha == art.sha256 => {}
            Ok((_, sha)) => {
                differences.push(format!("{}: file on disk is {sha}, manifest says {}", art.path, art.sha256))
            }
            Err(_) => differences.push(format!("{}: missing on disk", art.path)),
        }
    }
    if differences.is_empty() {
        eprintln!("verified: {} artifacts rebuilt byte for byte", recorded.artifacts.len());
        Ok(ExitCode::SUCCESS)
    } else {
        for d in &differences {
            eprintln!("difference: {d}");
        }
        Ok(ExitCode::from(1))
    }
}

/// A scratch folder on the same filesystem as `dir` (so cache links stay cheap).
fn tempdir_near(dir: &Path) -> anyhow::Result<PathBuf> {
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let p = parent.join(format!(".talforge-verify-{}", std::process::id()));
    std::fs::create_dir_all(&p)?;
    Ok(p)
}
