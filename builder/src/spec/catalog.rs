//! Where hardware profiles and overlays come from: a project folder holding `hardware-profiles/` and
//! `overlays/`, found by walking up from the cluster file (or given explicitly).
//!
//! The catalog only indexes file names; each profile or overlay is read and checked when it is used, so a
//! broken file that a cluster does not use does not stop that cluster (`profile lint` checks them all).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::error::{Diagnostic, Error, Result};
use crate::yaml::FieldPath;

use super::{HardwareProfileSpec, OverlaySpec, Source};

pub const PROFILES_DIR: &str = "hardware-profiles";
pub const OVERLAYS_DIR: &str = "overlays";
pub const OVERLAY_FILE: &str = "overlay.yaml";

/// A loaded profile file.
#[derive(Clone, Debug)]
pub struct LoadedProfile {
    pub spec: HardwareProfileSpec,
    pub source: Source,
}

/// A loaded overlay: its spec, its `overlay.yaml` source and its folder.
#[derive(Clone, Debug)]
pub struct LoadedOverlay {
    pub spec: OverlaySpec,
    pub source: Source,
    pub dir: PathBuf,
}

#[derive(Clone, Debug, Default)]
pub struct Catalog {
    pub root: PathBuf,
    profiles: BTreeMap<String, PathBuf>,
    overlays: BTreeMap<String, PathBuf>,
}

impl Catalog {
    /// Finds the nearest folder at or above `start` that holds `hardware-profiles/` or `overlays/`.
    pub fn discover(start: &Path) -> Result<Catalog> {
        let start = if start.as_os_str().is_empty() { Path::new(".") } else { start };
        let abs = std::fs::canonicalize(start).map_err(|source| Error::Read { path: start.to_owned(), source })?;
        let mut dir = Some(abs.as_path());
        while let Some(d) = dir {
            if d.join(PROFILES_DIR).is_dir() || d.join(OVERLAYS_DIR).is_dir() {
                return Catalog::open(d);
            }
            dir = d.parent();
        }
        Err(Error::Input(Box::new(Diagnostic::new(
            start,
            crate::yaml::Span::UNKNOWN,
            FieldPath::root(),
            format!("no {PROFILES_DIR}/ or {OVERLAYS_DIR}/ folder here or in any parent folder (use --catalog DIR)"),
        ))))
    }

    /// Indexes the catalog folder `root`.
    pub fn open(root: &Path) -> Result<Catalog> {
        let root = std::fs::canonicalize(root).map_err(|source| Error::Read { path: root.to_owned(), source })?;
        let root = root.as_path();
        let mut cat = Catalog { root: root.to_owned(), ..Catalog::default() };
        let pdir = root.join(PROFILES_DIR);
        if pdir.is_dir() {
            for entry in read_dir_sorted(&pdir)? {
                if entry.extension().is_some_and(|e| e == "yaml")
                    && let Some(stem) = entry.file_stem().and_then(|s| s.to_str())
                {
                    cat.profiles.insert(stem.to_owned(), entry.clone());
                }
            }
        }
        let odir = root.join(OVERLAYS_DIR);
        if odir.is_dir() {
            for entry in read_dir_sorted(&odir)? {
                if entry.join(OVERLAY_FILE).is_file()
                    && let Some(name) = entry.file_name().and_then(|s| s.to_str())
                {
                    cat.overlays.insert(name.to_owned(), entry.clone());
                }
            }
        }
        Ok(cat)
    }

    pub fn profile_names(&self) -> impl Iterator<Item = &str> {
        self.profiles.keys().map(String::as_str)
    }

    pub fn overlay_names(&self) -> impl Iterator<Item = &str> {
        self.overlays.keys().map(String::as_str)
    }

    pub fn has_profile(&self, name: &str) -> bool {
        self.profiles.contains_key(name)
    }

    pub fn has_overlay(&self, name: &str) -> bool {
        self.overlays.contains_key(name)
    }

    /// Reads and decodes one profile file (without resolving `extends`).
    pub fn load_profile(&self, name: &str) -> Option<Result<LoadedProfile>> {
        let path = self.profiles.get(name)?;
        Some(load_profile_file(&self.display_path(path)))
    }

    /// Reads and decodes one overlay.
    pub fn load_overlay(&self, name: &str) -> Option<Result<LoadedOverlay>> {
        let dir = self.overlays.get(name)?;
        Some(load_overlay_dir(&self.display_path(dir)))
    }

    /// Paths shown to users are relative to the current directory when the catalog is below it.
    fn display_path(&self, p: &Path) -> PathBuf {
        match std::env::current_dir().ok().and_then(|cwd| p.strip_prefix(cwd).ok().map(Path::to_owned)) {
            Some(rel) => rel,
            None => p.to_owned(),
        }
    }

    /// A "did you mean" list for an unknown name.
    pub fn known_profiles(&self) -> String {
        self.profiles.keys().cloned().collect::<Vec<_>>().join(", ")
    }

    pub fn known_overlays(&self) -> String {
        self.overlays.keys().cloned().collect::<Vec<_>>().join(", ")
    }
}

fn read_dir_sorted(dir: &Path) -> Result<Vec<PathBuf>> {
    let rd = std::fs::read_dir(dir).map_err(|source| Error::Read { path: dir.to_owned(), source })?;
    let mut out = Vec::new();
    for e in rd {
        let e = e.map_err(|source| Error::Read { path: dir.to_owned(), source })?;
        out.push(e.path());
    }
    out.sort();
    Ok(out)
}

/// Loads a profile file and checks that its `name` equals the file stem.
pub fn load_profile_file(path: &Path) -> Result<LoadedProfile> {
    let source = Source::read(path)?;
    let spec: HardwareProfileSpec = source.decode()?;
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or_default();
    if spec.name != stem {
        return Err(source
            .diag(FieldPath::root().key("name"), format!("expected the file stem {stem:?}; found {:?}", spec.name))
            .into());
    }
    Ok(LoadedProfile { spec, source })
}

/// Loads `<dir>/overlay.yaml` and checks that its `name` equals the folder name.
pub fn load_overlay_dir(dir: &Path) -> Result<LoadedOverlay> {
    let source = Source::read(&dir.join(OVERLAY_FILE))?;
    let spec: OverlaySpec = source.decode()?;
    let folder = dir.file_name().and_then(|s| s.to_str()).unwrap_or_default();
    if spec.name != folder {
        return Err(source
            .diag(FieldPath::root().key("name"), format!("expected the folder name {folder:?}; found {:?}", spec.name))
            .into());
    }
    Ok(LoadedOverlay { spec, source, dir: dir.to_owned() })
}
