//! The metric names and label names a PromQL expression uses, for the
//! check that the dashboard and the alert rules name only what portico
//! exports.

use std::collections::{BTreeMap, BTreeSet};

// ---- PromQL: the metric names and labels an expression uses ----

/// Aggregation operators: written `sum by (x) (…)`, so not always followed
/// by a parenthesis (prometheus.io, "Aggregation operators").
const AGGREGATIONS: &[&str] = &[
    "sum",
    "min",
    "max",
    "avg",
    "group",
    "stddev",
    "stdvar",
    "count",
    "count_values",
    "bottomk",
    "topk",
    "quantile",
    "limitk",
    "limit_ratio",
];
/// Keywords followed by a list of label names.
const LABEL_LISTS: &[&str] = &[
    "by",
    "without",
    "on",
    "ignoring",
    "group_left",
    "group_right",
];
const KEYWORDS: &[&str] = &[
    "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end",
];

/// What one expression names.
#[derive(Default, Debug)]
pub(super) struct Uses {
    /// Metric name → label names in its selectors.
    pub(super) selectors: BTreeMap<String, BTreeSet<String>>,
    /// Labels in `by (…)`, `on (…)` and the like.
    pub(super) grouping: BTreeSet<String>,
}

fn is_name_start(character: char) -> bool {
    character.is_ascii_alphabetic() || character == '_' || character == ':'
}

fn is_name_part(character: char) -> bool {
    character.is_ascii_alphanumeric() || character == '_' || character == ':'
}

/// The index after the string literal that starts at `start`.
fn skip_string(characters: &[char], start: usize) -> usize {
    let quote = characters[start];
    let mut index = start + 1;
    while index < characters.len() && characters[index] != quote {
        if characters[index] == '\\' && quote != '`' {
            index += 1;
        }
        index += 1;
    }
    index + 1
}

fn next_non_space(characters: &[char], mut index: usize) -> (usize, Option<char>) {
    while index < characters.len() && characters[index].is_whitespace() {
        index += 1;
    }
    (index, characters.get(index).copied())
}

/// The label names of a `{…}` block starting at `start`, and the index after it.
pub(super) fn label_block(characters: &[char], start: usize) -> (BTreeSet<String>, usize) {
    let mut labels = BTreeSet::new();
    let mut index = start + 1;
    let mut expecting_name = true;
    while index < characters.len() && characters[index] != '}' {
        let character = characters[index];
        if character == '"' || character == '\'' || character == '`' {
            index = skip_string(characters, index);
            expecting_name = false;
        } else if character == ',' {
            expecting_name = true;
            index += 1;
        } else if expecting_name && is_name_start(character) {
            let begin = index;
            while index < characters.len() && is_name_part(characters[index]) {
                index += 1;
            }
            labels.insert(characters[begin..index].iter().collect());
            expecting_name = false;
        } else {
            index += 1;
        }
    }
    (labels, index + 1)
}

/// The metric names, selector labels and grouping labels of a PromQL
/// expression. Strings, ranges (`[5m]`, `[$__rate_interval]`), numbers and
/// durations are skipped; functions are names followed by `(`.
pub(super) fn promql_uses(expression: &str) -> Uses {
    let characters: Vec<char> = expression.chars().collect();
    let mut uses = Uses::default();
    let mut index = 0;
    while index < characters.len() {
        let character = characters[index];
        if character == '"' || character == '\'' || character == '`' {
            index = skip_string(&characters, index);
        } else if character == '[' {
            while index < characters.len() && characters[index] != ']' {
                index += 1;
            }
            index += 1;
        } else if character == '{' {
            // A selector without a metric name: {__name__=…} is not used here.
            let (labels, after) = label_block(&characters, index);
            assert!(
                !labels.contains("__name__"),
                "name the metric outright: {expression}"
            );
            index = after;
        } else if character.is_ascii_digit() || character == '.' {
            while index < characters.len()
                && (characters[index].is_ascii_alphanumeric() || characters[index] == '.')
            {
                index += 1;
            }
        } else if is_name_start(character) {
            let begin = index;
            while index < characters.len() && is_name_part(characters[index]) {
                index += 1;
            }
            let name: String = characters[begin..index].iter().collect();
            let (after, next) = next_non_space(&characters, index);
            if LABEL_LISTS.contains(&name.as_str()) {
                if next == Some('(') {
                    let close = (after..characters.len())
                        .find(|&position| characters[position] == ')')
                        .unwrap_or(characters.len());
                    let list: String = characters[after + 1..close].iter().collect();
                    uses.grouping.extend(
                        list.split(',')
                            .map(str::trim)
                            .filter(|label| !label.is_empty())
                            .map(str::to_string),
                    );
                    index = close + 1;
                }
            } else if next == Some('(')
                || AGGREGATIONS.contains(&name.as_str())
                || KEYWORDS.contains(&name.as_str())
            {
                // A function, an aggregation or an operator keyword.
            } else {
                let labels = if next == Some('{') {
                    let (labels, end) = label_block(&characters, after);
                    index = end;
                    labels
                } else {
                    BTreeSet::new()
                };
                uses.selectors.entry(name).or_default().extend(labels);
            }
        } else {
            index += 1;
        }
    }
    uses
}

#[test]
fn promql_names_are_found_past_functions_strings_and_ranges() {
    let uses = promql_uses(
        "histogram_quantile(0.95, sum by (le, route) (rate(portico_x_bucket{job=\"$job\", \
         route=~\"a,b{c}\"}[$__rate_interval]))) / on(job) group_left(version) \
         sum(rate(portico_y_total[5m] offset 1h)) > 0.5 and up == 0",
    );
    let names: Vec<&str> = uses.selectors.keys().map(String::as_str).collect();
    assert_eq!(names, ["portico_x_bucket", "portico_y_total", "up"]);
    assert_eq!(
        uses.selectors["portico_x_bucket"],
        BTreeSet::from(["job".to_string(), "route".to_string()])
    );
    assert_eq!(
        uses.grouping,
        BTreeSet::from(["le", "route", "job", "version"].map(String::from))
    );
}
