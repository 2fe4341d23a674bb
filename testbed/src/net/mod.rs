//! The lab's network: VMs talk to each other and to the lab's own servers (DHCP, HTTP) on a bridge inside a
//! private network namespace, so a lab changes nothing in the host's network and leaves nothing behind when
//! its namespace is deleted. As root the namespace is a named one; without root it is owned by a user
//! namespace ([`userns`], when the host allows one). QEMU runs inside the namespace through
//! [`LabNet::command`] or [`LabNet::wrap`], and the lab's servers listen there through [`LabNet::bind_tcp`]
//! and friends.
//!
//! - [`LabNet`]: the namespace, the bridge with the gateway address and one tap per VM NIC.
//! - [`dhcp`]: a DHCPv4 server that answers only the MACs the lab planned.
//! - [`delete_netns`], [`list_netns`], [`links_in`]: stale namespaces, and what tests look at.
//!
//! - [`nat`]: optional NAT to the networks the lab process reaches, through slirp4netns ([`NetSpec::nat`]).

pub mod dhcp;
mod error;
mod lab;
pub mod nat;
mod netns;
pub mod userns;

pub use error::NetError;
pub(crate) use lab::check_netns_name;
pub use lab::{LabNet, NetMode, NetSpec, inside_args, setup_args};
pub use netns::{delete_netns, links_in, list_netns};
