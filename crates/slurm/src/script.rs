//! Batch scripts: operator-controlled `#SBATCH` lines, then user-supplied parameters as inert
//! `export NAME='value'` lines, then the application's body.
//!
//! Parameter values come from UCloud users, so they must reach the job byte for byte and never be
//! interpreted by bash: they are single-quoted, the only character needing care inside single quotes being
//! `'` itself. Two characters need more: NUL cannot exist in a bash variable at all (refused), and a
//! carriage return before a newline makes sbatch reject the whole script ("Batch script contains DOS line
//! breaks"), so CR is written as bash's `$'\r'` outside the quotes.

use std::fmt::Write as _;

/// What to render. Directives are written as `#SBATCH <directive>` in order; sbatch reads them only before
/// the first command, which is why they come first.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ScriptSpec {
    pub directives: Vec<String>,
    pub env: Vec<(String, String)>,
    pub body: String,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScriptError {
    /// A directive spanning lines would let the rest of it become a shell command.
    #[error("#SBATCH directive {index} contains a line break or NUL")]
    BadDirective { index: usize },
    #[error("invalid environment variable name {name:?}: must match [A-Za-z_][A-Za-z0-9_]*")]
    BadName { name: String },
    #[error("value of {name} contains a NUL byte, which no shell variable can hold")]
    NulInValue { name: String },
    #[error("script body contains a NUL byte")]
    NulInBody,
}

/// Quotes `value` as one POSIX shell word that expands to exactly `value` (for any `sh`, not only bash):
/// `it's` becomes `'it'\''s'`. NUL cannot be represented and is the caller's to refuse.
pub fn shell_quote(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('\'');
    for c in value.chars() {
        if c == '\'' {
            out.push_str("'\\''");
        } else {
            out.push(c);
        }
    }
    out.push('\'');
    out
}

/// Like [`shell_quote`], but writes CR as `$'\r'` so no CR byte lands in the script (bash only).
pub(crate) fn bash_quote(value: &str) -> String {
    if !value.contains('\r') {
        return shell_quote(value);
    }
    value
        .split('\r')
        .map(shell_quote)
        .collect::<Vec<_>>()
        .join("$'\\r'")
}

/// True for names bash accepts in `export NAME=...`.
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b'A'..=b'Z' | b'a'..=b'z' | b'_'))
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Renders the script. Fails rather than rendering anything a value could escape from.
pub fn render_script(spec: &ScriptSpec) -> Result<String, ScriptError> {
    let mut out = String::from("#!/bin/bash\n");
    for (index, d) in spec.directives.iter().enumerate() {
        if d.contains(['\n', '\r', '\0']) {
            return Err(ScriptError::BadDirective { index });
        }
        let d = d.trim();
        // Operators may write the prefix themselves; never emit "#SBATCH #SBATCH ...".
        let d = d.strip_prefix("#SBATCH").map_or(d, str::trim_start);
        let _ = writeln!(out, "#SBATCH {d}");
    }
    for (name, value) in &spec.env {
        if !valid_env_name(name) {
            return Err(ScriptError::BadName { name: name.clone() });
        }
        if value.contains('\0') {
            return Err(ScriptError::NulInValue { name: name.clone() });
        }
        let _ = writeln!(out, "export {name}={}", bash_quote(value));
    }
    if spec.body.contains('\0') {
        return Err(ScriptError::NulInBody);
    }
    out.push_str(&spec.body);
    if !out.ends_with('\n') {
        out.push('\n');
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::process::Command;

    fn nasty_values() -> Vec<(String, String)> {
        [
            ("SUBST", "$(id)"),
            ("BACKTICK", "`touch /tmp/ucim-pwned`"),
            ("SINGLE", "it's 'quoted'"),
            ("DOUBLE", "say \"hi\" $HOME"),
            ("NEWLINES", "line1\nline2\n\nexport X=1\n"),
            ("CRLF", "windows\r\nline\r"),
            ("MIXED", "'\"$(`'\\\\'`)\"'; rm -rf / #"),
            ("EMPTY", ""),
            ("UNICODE", "grüße 🚀 ${x:-y} !! ~ * ?"),
            ("BACKSLASH", "a\\nb\\"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
    }

    #[test]
    fn quote_examples() {
        assert_eq!(shell_quote("plain"), "'plain'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(bash_quote("a\rb"), "'a'$'\\r''b'");
    }

    #[test]
    fn renders_header_exports_body_in_order() {
        let spec = ScriptSpec {
            directives: vec!["--time=01:00:00".into(), " #SBATCH --job-name=x ".into()],
            env: vec![("A".into(), "1".into())],
            body: "echo hi".into(),
        };
        let s = render_script(&spec).expect("renders");
        assert_eq!(
            s,
            "#!/bin/bash\n#SBATCH --time=01:00:00\n#SBATCH --job-name=x\nexport A='1'\necho hi\n"
        );
    }

    #[test]
    fn refuses_what_could_escape() {
        let mut spec = ScriptSpec {
            directives: vec!["--time=1\nrm -rf ~".into()],
            ..Default::default()
        };
        assert_eq!(
            render_script(&spec),
            Err(ScriptError::BadDirective { index: 0 })
        );
        spec.directives.clear();
        for bad in ["", "1A", "A-B", "A B", "A=B", "Ä", "$(x)"] {
            spec.env = vec![(bad.into(), "v".into())];
            assert!(
                matches!(render_script(&spec), Err(ScriptError::BadName { .. })),
                "{bad:?}"
            );
        }
        spec.env = vec![("OK_1".into(), "a\0b".into())];
        assert_eq!(
            render_script(&spec),
            Err(ScriptError::NulInValue {
                name: "OK_1".into()
            })
        );
        spec.env.clear();
        spec.body = "a\0".into();
        assert_eq!(render_script(&spec), Err(ScriptError::NulInBody));
        assert!(valid_env_name("_x9") && valid_env_name("UCLOUD_PARAM"));
    }

    #[test]
    fn no_dos_line_breaks_reach_sbatch() {
        let spec = ScriptSpec {
            env: vec![("CRLF".into(), "a\r\nb".into())],
            ..Default::default()
        };
        assert!(!render_script(&spec).expect("renders").contains('\r'));
    }

    /// The real proof: bash runs the rendered script and every value comes back byte for byte.
    #[test]
    fn bash_gets_values_verbatim() {
        let values = nasty_values();
        let mut body = String::new();
        for (name, _) in &values {
            let _ = writeln!(body, "printf '%s\\0' \"${name}\"");
        }
        let spec = ScriptSpec {
            directives: vec!["--job-name=quoting".into()],
            env: values.clone(),
            body,
        };
        let script = render_script(&spec).expect("renders");
        let dir = std::env::temp_dir().join(format!("ucim-slurm-script-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("tmp dir");
        let path = dir.join("job.sh");
        std::fs::write(&path, &script).expect("write script");
        let out = Command::new("bash")
            .arg(&path)
            .env_clear()
            .output()
            .expect("run bash");
        std::fs::remove_dir_all(&dir).ok();
        assert!(
            out.status.success(),
            "bash failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.stderr.is_empty(),
            "stderr: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let got: Vec<&[u8]> = out.stdout.split(|b| *b == 0).collect();
        assert_eq!(got.len(), values.len() + 1, "one NUL-terminated value each");
        for ((name, want), got) in values.iter().zip(&got) {
            assert_eq!(String::from_utf8_lossy(got), *want, "{name}");
        }
        assert!(!std::path::Path::new("/tmp/ucim-pwned").exists());
    }

    /// Exported, not just set: child processes of the job see the values too.
    #[test]
    fn values_are_exported_to_children() {
        let spec = ScriptSpec {
            env: vec![("CHILD_SEES".into(), "$(echo no)".into())],
            body: "bash -c 'printf %s \"$CHILD_SEES\"'".into(),
            ..Default::default()
        };
        let out = Command::new("bash")
            .arg("-c")
            .arg(render_script(&spec).expect("renders"))
            .env_clear()
            .output()
            .expect("run bash");
        assert_eq!(String::from_utf8_lossy(&out.stdout), "$(echo no)");
    }
}
