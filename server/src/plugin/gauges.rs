//! Gauges plugins publish through `set_gauge` (ABI 1.4), kept per plugin instance and served
//! at `/metrics` as `cairn_plugin_<plugin>_<name>`. An instance's gauges go with it (unload,
//! reload, failure), so a scrape never shows what no running code stands behind.

use std::collections::BTreeMap;
use std::sync::Mutex;

use cairn_plugin_api::PluginError;
use cairn_plugin_api::ffi::host::GaugeSample;

/// At most this many series per plugin: a plugin labelling by something unbounded (a user
/// id) must not grow the server's memory or a scrape without bound.
pub const MAX_SERIES_PER_PLUGIN: usize = 1000;
/// At most this many labels per series, and this many bytes per help text or label value.
const MAX_LABELS: usize = 8;
const MAX_TEXT: usize = 256;

/// One gauge of one plugin.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Gauge {
    pub help: String,
    /// Label sets (in the plugin's order) and their values.
    pub series: BTreeMap<Vec<(String, String)>, f64>,
}

/// One instance's gauges, by name.
type InstanceGauges = BTreeMap<String, Gauge>;

/// The gauges of every plugin instance.
#[derive(Debug, Default)]
pub struct PluginGauges {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// By plugin, then generation (a reload's new instance may set its own before the old
    /// one is gone), then gauge name.
    by_plugin: BTreeMap<String, BTreeMap<u64, InstanceGauges>>,
    /// Instances whose gauges went: a call still in flight when they were forgotten must
    /// not bring them back.
    forgotten: BTreeMap<String, std::collections::BTreeSet<u64>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Help texts and label values are written into the exposition format unescaped, so what
/// would need escaping is refused.
fn check_text(what: &str, text: &str) -> Result<(), PluginError> {
    if text.len() > MAX_TEXT
        || text
            .chars()
            .any(|c| c.is_control() || c == '"' || c == '\\')
    {
        return Err(PluginError::InvalidArgument(format!(
            "{what} must be at most {MAX_TEXT} bytes, without control characters, quotes or backslashes"
        )));
    }
    Ok(())
}

impl PluginGauges {
    /// Sets (or, with NaN, removes) one series of `plugin`'s instance `generation`.
    pub fn set(
        &self,
        plugin: &str,
        generation: u64,
        mut sample: GaugeSample,
    ) -> Result<(), PluginError> {
        crate::catalog::validate_identifier("gauge", &sample.name)
            .map_err(PluginError::InvalidArgument)?;
        check_text("a gauge's help", &sample.help)?;
        if sample.labels.len() > MAX_LABELS {
            return Err(PluginError::InvalidArgument(format!(
                "gauge {:?} has {} labels; at most {MAX_LABELS}",
                sample.name,
                sample.labels.len()
            )));
        }
        for (label, value) in &sample.labels {
            crate::catalog::validate_identifier("label", label)
                .map_err(PluginError::InvalidArgument)?;
            if label == "plugin" || label.starts_with("__") {
                return Err(PluginError::InvalidArgument(format!(
                    "the label name `{label}` is reserved (`plugin` is the metric name's part, `__` Prometheus's)"
                )));
            }
            check_text("a label's value", value)?;
        }
        // One series per label set, whatever order the plugin wrote them in.
        sample.labels.sort();
        if sample.labels.windows(2).any(|w| w[0].0 == w[1].0) {
            return Err(PluginError::InvalidArgument(format!(
                "gauge {:?} names a label twice",
                sample.name
            )));
        }
        let mut inner = lock(&self.inner);
        if inner
            .forgotten
            .get(plugin)
            .is_some_and(|gone| gone.contains(&generation))
        {
            return Err(PluginError::Refused(format!(
                "plugin {plugin} was unloaded or replaced; its gauges are gone"
            )));
        }
        let instances = inner.by_plugin.entry(plugin.to_owned()).or_default();
        if sample.value.is_nan() {
            if let Some(gauge) = instances
                .get_mut(&generation)
                .and_then(|g| g.get_mut(&sample.name))
            {
                gauge.series.remove(&sample.labels);
            }
            return Ok(());
        }
        let gauges = instances.entry(generation).or_default();
        let held: usize = gauges.values().map(|g| g.series.len()).sum();
        let exists = gauges
            .get(&sample.name)
            .is_some_and(|g| g.series.contains_key(&sample.labels));
        if !exists && held >= MAX_SERIES_PER_PLUGIN {
            return Err(PluginError::Refused(format!(
                "plugin {plugin} already has {MAX_SERIES_PER_PLUGIN} gauge series; remove some (a NaN value) before adding more"
            )));
        }
        let gauge = gauges.entry(sample.name.clone()).or_default();
        if !sample.help.is_empty() {
            gauge.help = sample.help;
        }
        gauge.series.insert(sample.labels, sample.value);
        Ok(())
    }

    /// Drops what instance `generation` of `plugin` published, for good.
    pub fn forget(&self, plugin: &str, generation: u64) {
        let mut inner = lock(&self.inner);
        inner
            .forgotten
            .entry(plugin.to_owned())
            .or_default()
            .insert(generation);
        if let Some(instances) = inner.by_plugin.get_mut(plugin) {
            instances.remove(&generation);
            if instances.is_empty() {
                inner.by_plugin.remove(plugin);
            }
        }
    }

    /// Every plugin's gauges, from its newest instance: (plugin, gauge name, gauge).
    pub fn snapshot(&self) -> Vec<(String, String, Gauge)> {
        let inner = lock(&self.inner);
        let mut out = Vec::new();
        for (plugin, instances) in inner.by_plugin.iter() {
            if let Some((_, gauges)) = instances.last_key_value() {
                for (name, gauge) in gauges {
                    if !gauge.series.is_empty() {
                        out.push((plugin.clone(), name.clone(), gauge.clone()));
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample(name: &str, labels: &[(&str, &str)], value: f64) -> GaugeSample {
        GaugeSample {
            name: name.into(),
            help: "help".into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            value,
        }
    }

    #[test]
    fn series_are_set_removed_and_forgotten_with_their_instance() {
        let gauges = PluginGauges::default();
        gauges
            .set("p", 1, sample("g", &[("db", "a")], 1.0))
            .unwrap();
        gauges
            .set("p", 1, sample("g", &[("db", "b")], 2.0))
            .unwrap();
        gauges
            .set("p", 1, sample("g", &[("db", "a")], f64::NAN))
            .unwrap();
        let shown = gauges.snapshot();
        assert_eq!(shown.len(), 1);
        assert_eq!(shown[0].2.series.len(), 1);
        // A reload's new instance hides the old one's; forgetting the old leaves the new.
        gauges.set("p", 2, sample("h", &[], 5.0)).unwrap();
        assert_eq!(gauges.snapshot()[0].1, "h");
        gauges.forget("p", 1);
        assert_eq!(gauges.snapshot().len(), 1);
        gauges.forget("p", 2);
        assert!(gauges.snapshot().is_empty());
        // A call still in flight from a forgotten instance does not bring it back.
        assert!(gauges.set("p", 1, sample("g", &[], 1.0)).is_err());
        assert!(gauges.snapshot().is_empty());
    }

    #[test]
    fn label_order_makes_no_second_series() {
        let gauges = PluginGauges::default();
        gauges
            .set("p", 1, sample("g", &[("a", "1"), ("b", "2")], 1.0))
            .unwrap();
        gauges
            .set("p", 1, sample("g", &[("b", "2"), ("a", "1")], 2.0))
            .unwrap();
        assert_eq!(gauges.snapshot()[0].2.series.len(), 1);
        assert!(
            gauges
                .set("p", 1, sample("g", &[("a", "1"), ("a", "2")], 1.0))
                .is_err()
        );
        assert!(
            gauges
                .set("p", 1, sample("g", &[("__x", "1")], 1.0))
                .is_err()
        );
        assert!(
            gauges
                .set("p", 1, sample("g", &[("l", "say \"hi\"")], 1.0))
                .is_err()
        );
    }

    #[test]
    fn bad_names_and_unbounded_series_are_refused() {
        let gauges = PluginGauges::default();
        assert!(gauges.set("p", 1, sample("Bad-Name", &[], 1.0)).is_err());
        assert!(
            gauges
                .set("p", 1, sample("g", &[("plugin", "x")], 1.0))
                .is_err()
        );
        assert!(
            gauges
                .set("p", 1, sample("g", &[("l", "a\nb")], 1.0))
                .is_err()
        );
        for i in 0..MAX_SERIES_PER_PLUGIN {
            gauges
                .set("p", 1, sample("g", &[("n", &i.to_string())], 1.0))
                .unwrap();
        }
        let refused = gauges
            .set("p", 1, sample("g", &[("n", "one more")], 1.0))
            .unwrap_err();
        assert!(refused.to_string().contains("1000"), "{refused}");
        // Setting an existing series again is fine.
        gauges.set("p", 1, sample("g", &[("n", "0")], 3.0)).unwrap();
    }
}
