//! CSV output for every benchmark and simulation, written by the `csv` crate: fields holding a
//! comma, a quote or a line break (a CPU model, a note) are quoted as RFC 4180 says, and a row
//! whose field count differs from the header's is a bug that panics at once instead of a file
//! that parses wrong.

/// A CSV document being built: a header, then rows of the same width.
pub struct CsvTable(csv::Writer<Vec<u8>>);

impl CsvTable {
    /// A table with these column names.
    pub fn new(header: &[&str]) -> CsvTable {
        let mut w = csv::Writer::from_writer(Vec::new());
        w.write_record(header).expect("a header to memory");
        CsvTable(w)
    }

    /// Appends one row.
    ///
    /// # Panics
    /// If the row has a different number of fields than the header (a programming error).
    pub fn row<F: AsRef<[u8]>>(&mut self, fields: impl IntoIterator<Item = F>) {
        if let Err(e) = self.0.write_record(fields) {
            panic!("CSV row does not match its header: {e}");
        }
    }

    /// The document.
    pub fn finish(self) -> String {
        let bytes = self.0.into_inner().expect("a CSV in memory flushes");
        String::from_utf8(bytes).expect("CSV fields are UTF-8 strings")
    }
}

#[cfg(test)]
mod tests {
    use super::CsvTable;

    #[test]
    fn fields_are_quoted_where_needed_and_widths_are_checked() {
        let mut t = CsvTable::new(&["cpu_model", "ns"]);
        t.row(["AMD EPYC, 4th gen \"Genoa\"", "1.5"]);
        t.row(["plain", "2"]);
        assert_eq!(t.finish(), "cpu_model,ns\n\"AMD EPYC, 4th gen \"\"Genoa\"\"\",1.5\nplain,2\n");
        let r = std::panic::catch_unwind(|| {
            let mut t = CsvTable::new(&["a", "b"]);
            t.row(["only one"]);
        });
        assert!(r.is_err(), "a short row panics");
    }
}
