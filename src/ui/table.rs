//! Column-aligned tables for the terminal: a header and rows of cells, each column as wide as
//! its widest cell (counted in characters), two spaces between columns, no trailing blanks.

/// A table to print through [`crate::ui::Ui::table`].
#[derive(Debug, Clone, Default)]
pub struct Table {
    pub rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new<S: ToString>(header: &[S]) -> Self {
        Self {
            rows: vec![header.iter().map(ToString::to_string).collect()],
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    /// Whether it holds only its header.
    pub fn is_empty(&self) -> bool {
        self.rows.len() <= 1
    }

    /// The lines, aligned.
    pub fn lines(&self) -> Vec<String> {
        let columns = self.rows.iter().map(Vec::len).max().unwrap_or(0);
        let widths: Vec<usize> = (0..columns)
            .map(|i| {
                self.rows
                    .iter()
                    .filter_map(|r| r.get(i))
                    .map(|c| c.chars().count())
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        self.rows
            .iter()
            .map(|row| {
                row.iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect::<Vec<_>>()
                    .join("  ")
                    .trim_end()
                    .to_string()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn columns_align_on_the_widest_cell() {
        let mut t = super::Table::new(&["HOST", "STATE"]);
        assert!(t.is_empty());
        t.row(vec!["vps1.example.com".into(), "up".into()]);
        t.row(vec!["é".into(), "".into()]);
        assert_eq!(
            t.lines(),
            ["HOST              STATE", "vps1.example.com  up", "é"]
        );
    }
}
