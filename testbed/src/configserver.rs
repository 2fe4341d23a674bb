//! The lab's config server: an HTTP server (axum) on the gateway inside the lab's network namespace that
//! serves each node its machine config, found by SMBIOS UUID or MAC — what `talos.config=` in the node's
//! kernel arguments points at (`http://<gateway>/config?uuid=${uuid}&mac=${mac}`).
//!
//! Every request is logged as a [`Fetch`] (time, client, query, the node it matched, status, sha256 of
//! what was served). Unknown nodes get 404; a node the lab was told to refuse gets 403. Nothing else is
//! served.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{ConnectInfo, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use tokio::sync::mpsc;

/// One node's config and how it is recognized.
#[derive(Clone, Debug)]
pub struct ConfigEntry {
    pub node: String,
    /// Lower-case SMBIOS UUID.
    pub uuid: String,
    /// Lower-case MACs, `aa:bb:cc:dd:ee:ff`.
    pub macs: Vec<String>,
    pub body: Arc<Vec<u8>>,
    /// Refuse this node (403) instead of serving it (fault injection).
    pub refuse: bool,
}

impl ConfigEntry {
    pub fn sha256(&self) -> String {
        hex(&Sha256::digest(self.body.as_slice()))
    }
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// A request, as logged.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Fetch {
    /// Milliseconds since the server started.
    pub t_ms: u64,
    pub client: String,
    pub path: String,
    pub uuid: Option<String>,
    pub mac: Option<String>,
    /// The node the request matched, if any.
    pub node: Option<String>,
    pub status: u16,
    pub sha256: Option<String>,
    pub bytes: Option<u64>,
    pub reason: String,
}

#[derive(Debug)]
struct Shared {
    entries: Vec<ConfigEntry>,
    log: mpsc::UnboundedSender<Fetch>,
    start: Instant,
}

/// The router: `GET /config?uuid=..&mac=..`; anything else is 404.
pub fn router(entries: Vec<ConfigEntry>, log: mpsc::UnboundedSender<Fetch>, start: Instant) -> Router {
    let shared = Arc::new(Shared { entries, log, start });
    Router::new().route("/config", get(config)).fallback(not_found).with_state(shared)
}

/// Serves until the task is aborted.
pub async fn serve(
    listener: tokio::net::TcpListener,
    entries: Vec<ConfigEntry>,
    log: mpsc::UnboundedSender<Fetch>,
    start: Instant,
) -> std::io::Result<()> {
    let app = router(entries, log, start);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>()).await
}

async fn not_found(
    State(s): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    uri: axum::http::Uri,
) -> Response {
    let _ = s.log.send(Fetch {
        t_ms: elapsed_ms(s.start),
        client: client.to_string(),
        path: uri.path().to_owned(),
        uuid: None,
        mac: None,
        node: None,
        status: 404,
        sha256: None,
        bytes: None,
        reason: "no such path (configs are at /config?uuid=...&mac=...)".into(),
    });
    (StatusCode::NOT_FOUND, "not found\n").into_response()
}

fn elapsed_ms(start: Instant) -> u64 {
    u64::try_from(start.elapsed().as_millis()).unwrap_or(u64::MAX)
}

async fn config(
    State(s): State<Arc<Shared>>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Query(q): Query<BTreeMap<String, String>>,
) -> Response {
    let uuid = q.get("uuid").map(|u| u.to_ascii_lowercase()).filter(|u| !u.is_empty());
    let mac = q.get("mac").map(|m| m.to_ascii_lowercase().replace('-', ":")).filter(|m| !m.is_empty());
    let by_uuid = uuid.as_ref().and_then(|u| s.entries.iter().find(|e| &e.uuid == u));
    let by_mac = mac.as_ref().and_then(|m| s.entries.iter().find(|e| e.macs.iter().any(|x| x == m)));
    let found = by_uuid.or(by_mac);
    let mut fetch = Fetch {
        t_ms: elapsed_ms(s.start),
        client: client.to_string(),
        path: "/config".into(),
        uuid: uuid.clone(),
        mac: mac.clone(),
        node: found.map(|e| e.node.clone()),
        status: 0,
        sha256: None,
        bytes: None,
        reason: String::new(),
    };
    let response = match found {
        None => {
            fetch.status = 404;
            fetch.reason = format!(
                "unknown node: no node has {}",
                match (&uuid, &mac) {
                    (Some(u), Some(m)) => format!("SMBIOS UUID {u} or MAC {m}"),
                    (Some(u), None) => format!("SMBIOS UUID {u}"),
                    (None, Some(m)) => format!("MAC {m}"),
                    (None, None) => "an empty query (expected uuid= or mac=)".into(),
                }
            );
            (StatusCode::NOT_FOUND, format!("{}\n", fetch.reason)).into_response()
        }
        Some(e) if e.refuse => {
            fetch.status = 403;
            fetch.reason = format!("refused {} (the lab was told to refuse this node)", e.node);
            (StatusCode::FORBIDDEN, format!("{}\n", fetch.reason)).into_response()
        }
        Some(e) => {
            fetch.status = 200;
            fetch.sha256 = Some(e.sha256());
            fetch.bytes = Some(e.body.len() as u64);
            fetch.reason = format!("served {} by {}", e.node, if by_uuid.is_some() { "SMBIOS UUID" } else { "MAC" });
            ([(header::CONTENT_TYPE, "application/yaml")], e.body.as_ref().clone()).into_response()
        }
    };
    let _ = s.log.send(fetch);
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut c = tokio::net::TcpStream::connect(addr).await.unwrap();
        c.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").as_bytes()).await.unwrap();
        let mut out = String::new();
        c.read_to_string(&mut out).await.unwrap();
        out
    }

    #[tokio::test]
    async fn serves_by_uuid_or_mac_refuses_and_logs() {
        let entry = |node: &str, uuid: &str, mac: &str, refuse| ConfigEntry {
            node: node.into(),
            uuid: uuid.into(),
            macs: vec![mac.into()],
            body: Arc::new(format!("machine: {node}\n").into_bytes()),
            refuse,
        };
        let entries = vec![
            entry("cp-1", "aaaa-1", "02:00:00:00:00:01", false),
            entry("w-1", "bbbb-2", "02:00:00:00:00:02", true),
        ];
        let (tx, mut rx) = mpsc::unbounded_channel();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let task = tokio::spawn(serve(listener, entries.clone(), tx, Instant::now()));

        let r = get(addr, "/config?uuid=AAAA-1&mac=ff:ff:ff:ff:ff:ff").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.ends_with("machine: cp-1\n"), "{r}");
        let f = rx.recv().await.unwrap();
        assert_eq!((f.node.as_deref(), f.status), (Some("cp-1"), 200));
        assert_eq!(f.sha256.as_deref(), Some(entries[0].sha256().as_str()));
        assert_eq!(f.reason, "served cp-1 by SMBIOS UUID");

        let r = get(addr, "/config?mac=02-00-00-00-00-01").await;
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert_eq!(rx.recv().await.unwrap().reason, "served cp-1 by MAC");

        let r = get(addr, "/config?uuid=bbbb-2").await;
        assert!(r.starts_with("HTTP/1.1 403"), "{r}");
        let f = rx.recv().await.unwrap();
        assert_eq!((f.node.as_deref(), f.status), (Some("w-1"), 403));

        let r = get(addr, "/config?uuid=cccc-3").await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        let f = rx.recv().await.unwrap();
        assert_eq!((f.node, f.status), (None, 404));
        assert_eq!(f.reason, "unknown node: no node has SMBIOS UUID cccc-3");

        let r = get(addr, "/secrets.yaml").await;
        assert!(r.starts_with("HTTP/1.1 404"), "{r}");
        assert_eq!(rx.recv().await.unwrap().path, "/secrets.yaml");
        task.abort();
    }
}
