//! Secrets given inline, through the environment, or in a `*_file`.
//!
//! Reading `client_secret_file` and `cookie_secret_file` is the only I/O the
//! config module does: container platforms mount secrets as files, and the
//! file's contents must be checked (present, not empty, long enough) with
//! everything else so a broken secret mount is found by `portico check`.
//! Secret values never appear in errors; file paths do.

use base64::alphabet;
use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;

use super::errors::{quoted, Problems, MASKED};

/// The fewest decoded bytes a cookie secret may have.
const COOKIE_SECRET_MINIMUM: usize = 32;

const ANY_PADDING: GeneralPurposeConfig =
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
const STANDARD_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::STANDARD, ANY_PADDING);
const URL_SAFE_ANY_PADDING: GeneralPurpose = GeneralPurpose::new(&alphabet::URL_SAFE, ANY_PADDING);

/// A secret's text and where it came from.
pub(crate) struct SecretText {
    pub text: String,
    /// The key to name in later problems (`session.cookie_secret` or
    /// `session.cookie_secret_file`).
    pub key: String,
    /// How to show the source in an error: `"***"`, or the file's path.
    pub shown: String,
}

pub(crate) enum SecretInput {
    Missing,
    Found(SecretText),
    /// A problem was reported already.
    Broken,
}

/// Reads `{section}.{name}` or `{section}.{name}_file` (one, not both).
pub(crate) fn read_secret(
    problems: &mut Problems,
    section: &str,
    name: &str,
    inline: &str,
    file: &str,
) -> SecretInput {
    let key = format!("{section}.{name}");
    let file_key = format!("{key}_file");
    match (inline.is_empty(), file.is_empty()) {
        (true, true) => SecretInput::Missing,
        (false, false) => {
            problems.report(
                &key,
                MASKED,
                format!("both {name} and {name}_file are set"),
                format!("keep only one of {key} and {file_key}"),
            );
            SecretInput::Broken
        }
        (false, true) => SecretInput::Found(SecretText {
            text: inline.to_owned(),
            key,
            shown: MASKED.to_owned(),
        }),
        (true, false) => match std::fs::read_to_string(file) {
            Ok(contents) if contents.trim().is_empty() => {
                problems.report(
                    &file_key,
                    quoted(file),
                    "the file is empty",
                    "write the secret into the file, or point to the right file",
                );
                SecretInput::Broken
            }
            Ok(contents) => SecretInput::Found(SecretText {
                text: contents.trim().to_owned(),
                key: file_key,
                shown: quoted(file),
            }),
            Err(error) => {
                problems.report(
                    &file_key,
                    quoted(file),
                    format!("cannot read the file: {error}"),
                    "check the path and that portico's user may read it",
                );
                SecretInput::Broken
            }
        },
    }
}

/// Decodes a cookie secret: base64 (standard or URL-safe, padding optional)
/// of at least 32 bytes.
pub(crate) fn decode_cookie_secret(
    problems: &mut Problems,
    secret: &SecretText,
) -> Option<Vec<u8>> {
    const GENERATE: &str = "generate one with `openssl rand -base64 32`";
    let text = secret.text.trim();
    let decoded = STANDARD_ANY_PADDING
        .decode(text)
        .or_else(|_| URL_SAFE_ANY_PADDING.decode(text));
    match decoded {
        Ok(bytes) if bytes.len() >= COOKIE_SECRET_MINIMUM => Some(bytes),
        Ok(bytes) => {
            problems.report(
                &secret.key,
                &secret.shown,
                format!(
                    "decodes to {} bytes, needs at least {COOKIE_SECRET_MINIMUM}",
                    bytes.len()
                ),
                GENERATE,
            );
            None
        }
        Err(_) => {
            problems.report(&secret.key, &secret.shown, "is not base64", GENERATE);
            None
        }
    }
}

#[cfg(test)]
#[allow(clippy::expect_used, clippy::panic, clippy::unwrap_used)]
mod tests {
    use super::*;

    fn found(text: &str) -> SecretText {
        SecretText {
            text: text.to_owned(),
            key: "session.cookie_secret".to_owned(),
            shown: MASKED.to_owned(),
        }
    }

    #[test]
    fn cookie_secret_accepts_standard_and_url_safe_base64_with_or_without_padding() {
        let bytes: Vec<u8> = (0u8..32)
            .map(|n| n.wrapping_mul(37).wrapping_add(250))
            .collect();
        let standard = base64::engine::general_purpose::STANDARD.encode(&bytes);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert!(standard.contains(['+', '/']) || url_safe.contains(['-', '_']));
        for text in [
            standard.clone(),
            standard.trim_end_matches('=').to_owned(),
            url_safe,
        ] {
            let mut problems = Problems::default();
            assert_eq!(
                decode_cookie_secret(&mut problems, &found(&text)),
                Some(bytes.clone())
            );
            assert!(problems.is_empty());
        }
    }

    #[test]
    fn short_cookie_secret_reports_its_length_masked() {
        let mut problems = Problems::default();
        assert_eq!(
            decode_cookie_secret(&mut problems, &found("c2hvcnQgc2VjcmV0")),
            None
        );
        let errors = problems.into_errors();
        assert_eq!(
            errors[0].to_string(),
            "session.cookie_secret = \"***\": decodes to 12 bytes, needs at least 32 \
             — fix: generate one with `openssl rand -base64 32`"
        );
    }

    #[test]
    fn secret_given_twice_is_an_error() {
        let mut problems = Problems::default();
        let input = read_secret(&mut problems, "oidc", "client_secret", "a", "/some/file");
        assert!(matches!(input, SecretInput::Broken));
        assert_eq!(problems.into_errors()[0].key, "oidc.client_secret");
    }

    #[test]
    fn unreadable_secret_file_names_the_path() {
        let mut problems = Problems::default();
        let input = read_secret(
            &mut problems,
            "oidc",
            "client_secret",
            "",
            "/nonexistent/portico/secret",
        );
        assert!(matches!(input, SecretInput::Broken));
        let errors = problems.into_errors();
        assert_eq!(errors[0].key, "oidc.client_secret_file");
        assert_eq!(errors[0].value, "\"/nonexistent/portico/secret\"");
    }
}
