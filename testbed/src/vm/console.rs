//! The serial console as lines: terminal escapes and control bytes removed, carriage returns ignored,
//! bytes that are not UTF-8 replaced. Firmware and bootloaders redraw screens without newlines; the
//! reader also watches the unfinished line for sd-boot's menu countdown.

use std::time::Instant;

use serde::Serialize;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::UnixStream;
use tokio::sync::mpsc;

use super::VmSignal;

/// Longest line kept whole (the fixture's inventory line is a few KiB); longer ones are cut here.
pub const MAX_LINE: usize = 1 << 20;

/// What sd-boot's menu shows while it counts down.
pub const BOOT_MENU_MARKER: &str = "Boot in ";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ConsoleLine {
    pub text: String,
}

/// Text of raw console bytes: ESC sequences (CSI `ESC [ ... final`, and two-byte `ESC x`) and control
/// bytes other than tab dropped.
pub fn clean(raw: &[u8]) -> String {
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b == 0x1b {
            if raw.get(i + 1) == Some(&b'[') {
                i += 2;
                while i < raw.len() && !(0x40..=0x7e).contains(&raw[i]) {
                    i += 1;
                }
                i += 1;
            } else if matches!(raw.get(i + 1), Some(b'(' | b')' | b'*' | b'+')) {
                // character set designation: ESC ( B
                i += 3;
            } else {
                i += 2;
            }
            continue;
        }
        if b >= 0x20 || b == b'\t' {
            out.push(b);
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Splits console bytes into lines; keeps the unfinished one.
#[derive(Debug, Default)]
pub struct LineSplitter {
    partial: Vec<u8>,
    menu_answered: bool,
}

/// What one chunk of console bytes gave.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Chunk {
    pub lines: Vec<String>,
    /// The bootloader's countdown appeared in the unfinished line (reported once per menu).
    pub boot_menu: bool,
}

impl LineSplitter {
    pub fn push(&mut self, bytes: &[u8]) -> Chunk {
        let mut chunk = Chunk::default();
        for &b in bytes {
            if b == b'\n' {
                let line = clean(&self.partial);
                self.partial.clear();
                self.menu_answered = false;
                chunk.lines.push(line);
            } else if self.partial.len() < MAX_LINE {
                self.partial.push(b);
            }
        }
        if !self.menu_answered && contains(&self.partial, BOOT_MENU_MARKER.as_bytes()) {
            self.menu_answered = true;
            chunk.boot_menu = true;
        }
        chunk
    }
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

/// Reads the console socket until QEMU closes it, sending lines (and the boot menu) as signals; presses
/// Enter at the boot menu when `skip_boot_menu`.
pub async fn read_console(stream: UnixStream, signals: mpsc::UnboundedSender<VmSignal>, skip_boot_menu: bool) {
    let (mut rd, mut wr) = stream.into_split();
    let mut split = LineSplitter::default();
    let mut buf = vec![0u8; 64 * 1024];
    let _start = Instant::now();
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let chunk = split.push(&buf[..n]);
        for text in chunk.lines {
            let _ = signals.send(VmSignal::Console(ConsoleLine { text }));
        }
        if chunk.boot_menu {
            if skip_boot_menu {
                let _ = wr.write_all(b"\r").await;
            }
            let _ = signals.send(VmSignal::BootMenu);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_and_control_bytes_go() {
        assert_eq!(clean(b"\x1b[2J\x1b[01;01HBdsDxe: loading\r"), "BdsDxe: loading");
        assert_eq!(clean(b"a\x1b(Bb\x07c\td"), "abc\td");
        assert_eq!(clean(b"\xc4\xc4ok"), "\u{fffd}\u{fffd}ok");
    }

    #[test]
    fn lines_split_across_chunks_and_the_menu_is_seen_once() {
        let mut s = LineSplitter::default();
        let c = s.push(b"BdsDxe: starting Boot0001\r\n\x1b[2J  Talos (v1.14.0) \x1b[28;01H   Boot in 10 s.");
        assert_eq!(c.lines, vec!["BdsDxe: starting Boot0001".to_owned()]);
        assert!(c.boot_menu);
        let c = s.push(b"\x1b[28;01H   Boot in 9 s.");
        assert!(!c.boot_menu, "the same menu is answered once");
        let c = s.push(b"\x1b[2J\x1b[01;01HEFI stub: Loaded initrd\r\n[    0.000000] Linux version 6.1");
        assert_eq!(c.lines.len(), 1);
        assert!(c.lines[0].ends_with("EFI stub: Loaded initrd"), "{:?}", c.lines);
        let c = s.push(b"\nBoot in 5 s.");
        assert_eq!(c.lines, vec!["[    0.000000] Linux version 6.1".to_owned()]);
        assert!(c.boot_menu, "a menu after a newline (a reboot) is a new menu");
    }
}
