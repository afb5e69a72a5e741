//! A per-thread cache of the per-request series' handles.

use std::cell::RefCell;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

/// Handles to the per-request series most recently used on this thread.
/// prometheus-client's families hash the labels and take a lock on every
/// lookup; a request's series are found here by comparing a few short
/// strings instead. A handle shares its series with the family, so what it
/// counts is what the registry renders.
pub(super) struct HotSeries {
    pub(super) registry: u64,
    /// The route, or for upstream series the upstream's origin.
    pub(super) label: Box<str>,
    pub(super) method: &'static str,
    pub(super) status_class: &'static str,
    pub(super) counter: Option<Counter>,
    pub(super) histogram: Histogram,
}

/// At most this many series are kept per thread (routes × methods × status
/// classes in use at once; the oldest go first).
pub(super) const HOT_SERIES: usize = 32;

thread_local! {
    static HOT: RefCell<Vec<HotSeries>> = const { RefCell::new(Vec::new()) };
}

/// Runs `hit` on the cached handles for the key, or `miss` to make them
/// (and caches what it made).
pub(super) fn with_hot_series(
    key: (u64, &str, &'static str, &'static str),
    hit: impl FnOnce(&HotSeries),
    miss: impl FnOnce() -> HotSeries,
) {
    let (registry, label, method, status_class) = key;
    HOT.with(|hot| {
        let mut hot = hot.borrow_mut();
        let found = hot.iter().position(|series| {
            series.registry == registry
                && series.method == method
                && series.status_class == status_class
                && &*series.label == label
        });
        match found {
            Some(index) => hit(&hot[index]),
            None => {
                let series = miss();
                hit(&series);
                if hot.len() >= HOT_SERIES {
                    hot.remove(0);
                }
                hot.push(series);
            }
        }
    });
}
