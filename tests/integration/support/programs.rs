//! Programs the tests start, looked up once per test run.
//!
//! When one is missing, the first test that needs it fails at once with the
//! package to install, and every later one fails at once with a one-line
//! reminder: no test waits for a server that cannot start. The packages are
//! the ones `scripts/test` installs (`scripts/test-packages`).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, OnceLock};

/// Where `program` is on `PATH`, if anywhere.
pub fn find(program: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|directory| directory.join(program))
        .find(|candidate| is_executable(candidate))
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Panics at once unless `program` (from the Debian package `package`) is on
/// `PATH`. The first failure explains; later ones point back to it.
pub fn require(program: &str, package: &str) {
    static FOUND: OnceLock<Mutex<HashMap<String, bool>>> = OnceLock::new();
    static EXPLAINED: OnceLock<Mutex<HashMap<String, AtomicBool>>> = OnceLock::new();
    let found = *FOUND
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
        .entry(program.to_string())
        .or_insert_with(|| find(program).is_some());
    if found {
        return;
    }
    let first = {
        let mut explained = EXPLAINED
            .get_or_init(Default::default)
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        !explained
            .entry(program.to_string())
            .or_insert_with(|| AtomicBool::new(false))
            .swap(true, Ordering::SeqCst)
    };
    if first {
        panic!(
            "`{program}` is not on PATH, and the integration tests start their own. Install the \
             Debian/Ubuntu package `{package}` (`sudo apt-get install {package}`), or run \
             `scripts/test`, which installs what the tests need and then runs them."
        );
    }
    panic!("`{program}` is not on PATH: install the package `{package}` (see the first failure)");
}
