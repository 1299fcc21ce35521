//! Aligned plain-text columns.

use std::borrow::Cow;

use streamlet_proto::escape::escape;

/// How a column's cells (and its title) line up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Align {
    Left,
    /// For numbers.
    Right,
}

/// A table: a title per column, then rows of cells, rendered with the
/// columns padded to their widest cell and two spaces between them.
#[derive(Debug)]
pub(crate) struct Grid {
    columns: Vec<(&'static str, Align)>,
    rows: Vec<Vec<String>>,
}

impl Grid {
    pub fn new(columns: &[(&'static str, Align)]) -> Self {
        Self { columns: columns.to_vec(), rows: Vec::new() }
    }

    /// Adds a row; it must have a cell per column. Each cell is escaped
    /// ([`escape`]): a cell holds a field from the daemon (or several), which
    /// may hold any text a gateway, a streamlet or a client wrote.
    pub fn row(&mut self, cells: Vec<String>) {
        debug_assert_eq!(cells.len(), self.columns.len(), "a cell per column");
        let escaped = cells.into_iter().map(|cell| match escape(&cell) {
            Cow::Borrowed(_) => cell,
            Cow::Owned(escaped) => escaped,
        });
        self.rows.push(escaped.collect());
    }

    /// The title row, the rows, each line ending in a newline; `empty` on a
    /// line of its own when there are no rows.
    pub fn render(&self, empty: &str) -> String {
        let mut widths: Vec<usize> = self.columns.iter().map(|(title, _)| width(title)).collect();
        for row in &self.rows {
            for (w, cell) in widths.iter_mut().zip(row) {
                *w = (*w).max(width(cell));
            }
        }
        let mut out = String::new();
        let titles: Vec<&str> = self.columns.iter().map(|(title, _)| *title).collect();
        self.line(&mut out, &titles, &widths);
        for row in &self.rows {
            let cells: Vec<&str> = row.iter().map(String::as_str).collect();
            self.line(&mut out, &cells, &widths);
        }
        if self.rows.is_empty() {
            out.push_str(empty);
            out.push('\n');
        }
        out
    }

    fn line(&self, out: &mut String, cells: &[&str], widths: &[usize]) {
        let start = out.len();
        for (i, ((cell, w), (_, align))) in cells.iter().zip(widths).zip(&self.columns).enumerate() {
            if i > 0 {
                out.push_str("  ");
            }
            let pad = " ".repeat(w - width(cell));
            match align {
                Align::Left => {
                    out.push_str(cell);
                    out.push_str(&pad);
                }
                Align::Right => {
                    out.push_str(&pad);
                    out.push_str(cell);
                }
            }
        }
        let end = out[start..].trim_end().len() + start;
        out.truncate(end);
        out.push('\n');
    }
}

/// Columns on a terminal, near enough: one per `char`.
fn width(s: &str) -> usize {
    s.chars().count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pads_left_and_right_aligned_columns() {
        let mut grid = Grid::new(&[("NAME", Align::Left), ("N", Align::Right), ("NOTE", Align::Left)]);
        grid.row(vec!["a".into(), "1000".into(), "x".into()]);
        grid.row(vec!["long-name".into(), "7".into(), "".into()]);
        assert_eq!(grid.render("(none)"), "NAME          N  NOTE\na          1000  x\nlong-name     7\n");
    }

    #[test]
    fn an_empty_grid_has_its_titles_and_the_empty_line() {
        let grid = Grid::new(&[("ID", Align::Right), ("POOL", Align::Left)]);
        assert_eq!(grid.render("(no streams)"), "ID  POOL\n(no streams)\n");
    }

    #[test]
    fn a_cell_cannot_break_its_line_or_reach_the_terminal() {
        let mut grid = Grid::new(&[("TENANT", Align::Left), ("N", Align::Right)]);
        grid.row(vec!["a\r\n\x1b[2J\u{9b}31m\x07\\".into(), "1".into()]);
        grid.row(vec!["b".into(), "2".into()]);
        let rendered = grid.render("");
        assert_eq!(
            rendered,
            "TENANT                       N\n\
             a\\r\\n\\x1b[2J\\u{9b}31m\\x07\\\\  1\n\
             b                            2\n"
        );
        assert!(!rendered.chars().any(|c| c.is_control() && c != '\n'), "{rendered:?}");
    }

    #[test]
    fn counts_characters_not_bytes() {
        let mut grid = Grid::new(&[("POOL", Align::Left), ("N", Align::Right)]);
        grid.row(vec!["échos".into(), "1".into()]);
        grid.row(vec!["ab".into(), "2".into()]);
        assert_eq!(grid.render(""), "POOL   N\néchos  1\nab     2\n");
    }
}
