//! Talos machine configs: generation per contract, the shape registry (every document kind's Go struct tree,
//! from `shapes.txt`), the patch engine (`--config-patch` loading and applying, with Talos's exact merge,
//! delete and JSON-patch rules), and rendering whole clusters.
//!
//! [`normalize_document`] reprints one document in Talos's field order and emptiness rules; [`load_patch`]
//! and [`apply_patches`] do what Talos's `configpatcher` does.

pub mod build;
mod delete;
mod error;
pub mod generate;
mod jsonpatch;
mod merge;
mod patch;
pub mod render;
mod scalars;
mod shapes;
mod typed;

pub use error::{DocId, PatchError, PatchOrigin, ShapeError};
pub use jsonpatch::node_to_json;
pub use patch::{Patch, PatchKind, apply_patches, load_patch, load_patch_node};
pub use render::{DirectFiles, DirectRequest, OutputType, generate_direct, write_cluster_configs};
pub use shapes::{Contract, DocDef, Field, MergeRule, Shapes, StructDef, TableError, TypeDef, TypeExpr};
pub use typed::{document_id, normalize_document};

#[cfg(test)]
mod tests;
