//! qcow2 disk images the way Talos makes them (`pkg/imager/qemuimg/qemuimg.go` `Convert`, options from
//! `pkg/imager/profile/default.go`): `qemu-img convert -f raw -O qcow2 -o cluster_size=8k <raw> <out>`, run through
//! the project's [`ToolRunner`] (fixed environment, errors that name the tool). The result is checked with
//! `qemu-img info --output=json` (format qcow2, the raw image's virtual size, the requested cluster size).
//!
//! Determinism: qcow2 has no timestamps, and `qemu-img convert` writes clusters in order unless asked for
//! out-of-order writes (`-W`, not used), so the same raw image gives the same qcow2 bytes (checked by the tests).
//! Zero runs of the raw image (and its holes) become unallocated clusters. The output is written beside the
//! destination under a temp name and renamed into place.

use std::path::{Path, PathBuf};

use super::atomic::TempOutput;
use crate::tool::{Program, ToolError, ToolRunner};

/// `qemu-img`, from Debian's `qemu-utils`.
pub const QEMU_IMG: Program = Program::new("qemu-img", "qemu-utils");
/// Talos's `diskFormatOptions` for qcow2 outputs.
pub const TALOS_QCOW2_OPTIONS: &str = "cluster_size=8k";

/// What `qemu-img info` says about the written image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Qcow2Report {
    pub virtual_size: u64,
    /// Bytes of the qcow2 file.
    pub file_size: u64,
    pub cluster_size: u64,
}

/// What can go wrong converting.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Qcow2Error {
    #[error(transparent)]
    Tool(#[from] ToolError),

    #[error("qemu-img info on {} is not as expected: expected {expected}, found {found}", .path.display())]
    Unexpected { path: PathBuf, expected: String, found: String },

    #[error("cannot {action} {}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

fn io_err(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> Qcow2Error {
    let path = path.to_owned();
    move |source| Qcow2Error::Io { action, path, source }
}

/// Converts the raw image `raw` to qcow2 at `out` with `options` (`-o`, e.g. [`TALOS_QCOW2_OPTIONS`]).
pub fn convert_to_qcow2(runner: &ToolRunner, raw: &Path, out: &Path, options: &str) -> Result<Qcow2Report, Qcow2Error> {
    let raw_size = std::fs::metadata(raw).map_err(io_err("read", raw))?.len();
    let tmp = TempOutput::create(out).map_err(io_err("create", out))?;
    let args = [
        "convert".as_ref(),
        "-f".as_ref(),
        "raw".as_ref(),
        "-O".as_ref(),
        "qcow2".as_ref(),
        "-o".as_ref(),
        options.as_ref(),
        raw.as_os_str(),
        tmp.path().as_os_str(),
    ];
    runner.run(QEMU_IMG, args, None, None)?;
    let info = image_info(runner, tmp.path())?;
    let unexpected = |expected: String, found: String| Qcow2Error::Unexpected { path: out.to_owned(), expected, found };
    if info.format != "qcow2" {
        return Err(unexpected("format qcow2".into(), format!("format {}", info.format)));
    }
    if info.virtual_size != raw_size {
        return Err(unexpected(format!("virtual size {raw_size}"), format!("virtual size {}", info.virtual_size)));
    }
    if let Some(want) = cluster_size_option(options)
        && info.cluster_size != want
    {
        return Err(unexpected(format!("cluster size {want}"), format!("cluster size {}", info.cluster_size)));
    }
    let file_size = std::fs::metadata(tmp.path()).map_err(io_err("read", tmp.path()))?.len();
    tmp.commit().map_err(io_err("write", out))?;
    Ok(Qcow2Report { virtual_size: info.virtual_size, file_size, cluster_size: info.cluster_size })
}

/// The fields of `qemu-img info --output=json` this module checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageInfo {
    pub format: String,
    pub virtual_size: u64,
    pub cluster_size: u64,
}

/// Runs `qemu-img info --output=json` on `path`.
pub fn image_info(runner: &ToolRunner, path: &Path) -> Result<ImageInfo, Qcow2Error> {
    let out = runner.run(QEMU_IMG, ["info".as_ref(), "--output=json".as_ref(), path.as_os_str()], None, None)?;
    let bad = |what: &str| Qcow2Error::Unexpected {
        path: path.to_owned(),
        expected: format!("json with {what}"),
        found: String::from_utf8_lossy(&out.stdout).chars().take(200).collect(),
    };
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).map_err(|_| bad("an object"))?;
    Ok(ImageInfo {
        format: v.get("format").and_then(|f| f.as_str()).ok_or_else(|| bad("\"format\""))?.to_owned(),
        virtual_size: v.get("virtual-size").and_then(|f| f.as_u64()).ok_or_else(|| bad("\"virtual-size\""))?,
        cluster_size: v.get("cluster-size").and_then(|f| f.as_u64()).unwrap_or(0),
    })
}

/// `cluster_size=8k` → 8192 (qemu-img size suffixes k/M, or plain bytes).
fn cluster_size_option(options: &str) -> Option<u64> {
    let value = options.split(',').find_map(|o| o.strip_prefix("cluster_size="))?;
    let (digits, mult) = match value.chars().last()? {
        'k' | 'K' => (&value[..value.len() - 1], 1024),
        'M' | 'm' => (&value[..value.len() - 1], 1024 * 1024),
        _ => (value, 1),
    };
    digits.parse::<u64>().ok().map(|n| n * mult)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_size_options() {
        assert_eq!(cluster_size_option(TALOS_QCOW2_OPTIONS), Some(8192));
        assert_eq!(cluster_size_option("compat=1.1,cluster_size=65536"), Some(65536));
        assert_eq!(cluster_size_option("subformat=fixed,force_size"), None);
    }
}
