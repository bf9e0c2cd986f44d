//! Output helpers: stdout, sizes for people, aligned tables, JSON lines.

use std::io::{self, BufWriter, Stdout, Write};

/// Buffered stdout; write with `writeln!` and `?` (a closed pipe ends quietly).
pub fn stdout() -> BufWriter<Stdout> {
    BufWriter::new(io::stdout())
}

/// `n` bytes for people: `812`, `4096 (4.0 KiB)`, `123456789 (117.7 MiB)`.
pub fn size(n: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if n < 1024 {
        return n.to_string();
    }
    let mut value = n as f64 / 1024.0;
    let mut unit = 0;
    while value >= 1024.0 && unit + 1 < UNITS.len() {
        value /= 1024.0;
        unit += 1;
    }
    format!("{n} ({value:.1} {})", UNITS[unit])
}

/// `n` bytes for prose: `812 bytes`, `4096 bytes (4.0 KiB)`.
pub fn bytes(n: u64) -> String {
    match size(n).split_once(' ') {
        Some((digits, unit)) => format!("{digits} bytes {unit}"),
        None => format!("{n} bytes"),
    }
}

/// A table printed with aligned columns: text left, numbers right.
pub struct Table {
    header: Vec<&'static str>,
    right: Vec<bool>,
    rows: Vec<Vec<String>>,
}

impl Table {
    /// Columns: `(title, right_aligned)`.
    pub fn new(columns: &[(&'static str, bool)]) -> Table {
        Table {
            header: columns.iter().map(|c| c.0).collect(),
            right: columns.iter().map(|c| c.1).collect(),
            rows: Vec::new(),
        }
    }

    /// Adds a row (as many cells as columns).
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.header.len());
        self.rows.push(cells);
    }

    /// Writes the header and the rows, each line indented by `indent` spaces.
    pub fn write(&self, out: &mut impl Write, indent: usize) -> io::Result<()> {
        let mut widths: Vec<usize> = self.header.iter().map(|h| h.chars().count()).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(cell.chars().count());
            }
        }
        let header: Vec<String> = self.header.iter().map(|h| h.to_string()).collect();
        for row in std::iter::once(&header).chain(&self.rows) {
            let mut line = " ".repeat(indent);
            for (i, cell) in row.iter().enumerate() {
                let last = i + 1 == row.len();
                if i > 0 {
                    line.push_str("  ");
                }
                let pad = widths[i] - cell.chars().count();
                if self.right[i] {
                    line.push_str(&" ".repeat(pad));
                    line.push_str(cell);
                } else {
                    line.push_str(cell);
                    if !last {
                        line.push_str(&" ".repeat(pad));
                    }
                }
            }
            writeln!(out, "{}", line.trim_end())?;
        }
        Ok(())
    }
}

/// A tenant name for people: the plain index ("") shows as `(plain index)`.
pub fn tenant_label(name: &str) -> String {
    if name.is_empty() {
        "(plain index)".to_string()
    } else {
        name.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(size(0), "0");
        assert_eq!(size(1023), "1023");
        assert_eq!(size(4096), "4096 (4.0 KiB)");
        assert_eq!(size(3 << 20), "3145728 (3.0 MiB)");
        assert_eq!(bytes(12), "12 bytes");
        assert_eq!(bytes(4096), "4096 bytes (4.0 KiB)");
    }

    #[test]
    fn table_aligns() {
        let mut t = Table::new(&[("NAME", false), ("BYTES", true)]);
        t.row(vec!["a".into(), "1".into()]);
        t.row(vec!["long-name".into(), "12345".into()]);
        let mut out = Vec::new();
        t.write(&mut out, 0).unwrap();
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "NAME       BYTES\na              1\nlong-name  12345\n"
        );
    }
}
