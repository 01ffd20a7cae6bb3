//! node_exporter's textfile-collector format: each metric once, with its `# HELP` and
//! `# TYPE` lines, then its samples.

use std::fmt::Write as _;

#[derive(Debug, Clone, Copy)]
pub enum Kind {
    Gauge,
    Counter,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Gauge => "gauge",
            Kind::Counter => "counter",
        }
    }
}

/// The metrics of one view, in the order they are added.
#[derive(Debug, Default)]
pub struct Metrics {
    text: String,
}

impl Metrics {
    pub fn new() -> Self {
        Self::default()
    }

    /// One metric with one sample.
    pub fn add(&mut self, name: &str, kind: Kind, help: &str, value: u64) {
        self.header(name, kind, help);
        let _ = writeln!(self.text, "{name} {value}");
    }

    /// One metric with a sample for each value of `label`.
    pub fn labelled<'a>(
        &mut self,
        name: &str,
        kind: Kind,
        help: &str,
        label: &str,
        samples: impl IntoIterator<Item = (&'a str, u64)>,
    ) {
        self.header(name, kind, help);
        for (value_of_label, value) in samples {
            let escaped = value_of_label
                .replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n");
            let _ = writeln!(self.text, "{name}{{{label}=\"{escaped}\"}} {value}");
        }
    }

    fn header(&mut self, name: &str, kind: Kind, help: &str) {
        let _ = writeln!(
            self.text,
            "# HELP {name} {help}\n# TYPE {name} {}",
            kind.name()
        );
    }

    pub fn into_text(self) -> String {
        self.text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_metric_has_its_help_and_type_then_its_samples() {
        let mut metrics = Metrics::new();
        metrics.add("a_total", Kind::Counter, "As seen.", 3);
        metrics.labelled(
            "b",
            Kind::Gauge,
            "Bs by why.",
            "why",
            [("x", 1), ("q\"\\", 2)],
        );
        assert_eq!(
            metrics.into_text(),
            "# HELP a_total As seen.\n# TYPE a_total counter\na_total 3\n\
             # HELP b Bs by why.\n# TYPE b gauge\nb{why=\"x\"} 1\nb{why=\"q\\\"\\\\\"} 2\n"
        );
    }
}
