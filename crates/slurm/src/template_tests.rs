use super::*;
use std::process::Command;

fn text(name: &str, v: &str) -> (String, TemplateValue) {
    (name.to_string(), TemplateValue::Text(v.to_string()))
}

const NASTY: &str = "$(touch /tmp/ucim-template-pwned) `touch /tmp/ucim-template-pwned` it's \"q\"\nnext line\n#SBATCH --mem=999G\r\n; rm -rf ~ #";

#[test]
fn values_become_single_words() {
    let params = vec![
        text("script", "run me.py"),
        ("n".to_string(), TemplateValue::Integer(-42)),
        ("verbose".to_string(), TemplateValue::Bool(true)),
        ("rate".to_string(), TemplateValue::Float(0.5)),
    ];
    let out = render_template("python3 {{ script }} --n {{ n }} --rate={{ rate }}{% if verbose %} -v{% endif %}", &params).unwrap();
    assert_eq!(out, "python3 'run me.py' --n -42 --rate=0.5 -v");
    assert_eq!(render_template("{{ verbose }} {{ not verbose }}", &params).unwrap(), "true false");
}

#[test]
fn template_authors_cannot_unquote() {
    // Filters and concatenation still produce one quoted word; `safe` changes nothing.
    let params = vec![text("x", "a b'c")];
    assert_eq!(render_template("echo {{ x|upper }}", &params).unwrap(), "echo 'A B'\\''C'");
    assert_eq!(render_template("echo {{ '--opt=' ~ x }}", &params).unwrap(), "echo '--opt=a b'\\''c'");
    assert_eq!(render_template("echo {{ x|safe }}", &params).unwrap(), "echo 'a b'\\''c'");
    assert_eq!(render_template("echo {{ [x, 'y'] }}", &params).unwrap(), "echo 'a b'\\''c' 'y'");
}

#[test]
fn refuses_values_where_quoting_does_not_protect() {
    let params = vec![text("x", "$(id)")];
    for (template, place) in [
        ("echo \"{{ x }}\"", "inside double quotes"),
        ("echo '{{ x }}'", "inside single quotes"),
        ("echo `echo {{ x }}`", "inside backticks"),
        ("echo ${HOME:-{{ x }}}", "inside ${...}"),
        ("echo $(( {{ x }} + 1 ))", "inside $((...))"),
        ("echo \"$(echo {{ x }})\"", "inside quotes"),
        ("cat <<EOF\n{{ x }}\nEOF", "after a heredoc (<<)"),
    ] {
        assert_eq!(render_template(template, &params), Err(TemplateError::UnsafePlacement(place)), "{template}");
    }
    // Where a word stands on its own, it is fine: command substitution, subshells, here-strings, after quotes.
    for template in [
        "echo $(basename {{ x }})",
        "(cd /tmp && echo {{ x }})",
        "cat <<< {{ x }}",
        "echo \"a\" {{ x }} 'b' --k={{ x }}",
        "# comment with \"quote\nrun {{ x }}",
        "echo \\\" {{ x }}",
    ] {
        assert!(render_template(template, &params).is_ok(), "{template}");
    }
}

#[test]
fn missing_parameters_and_bad_templates_are_errors() {
    assert!(matches!(render_template("run {{ missing }}", &[]), Err(TemplateError::Render(m)) if m.contains("needs a parameter")));
    assert!(matches!(check_template("run {{ x "), Err(TemplateError::Syntax(_))));
    assert!(matches!(check_template("{% include 'x' %}"), Err(TemplateError::Syntax(_))));
    assert!(matches!(check_template("run \u{E000}0\u{E001}"), Err(TemplateError::Syntax(_))));
    assert!(matches!(render_template("{% for i in range(100000) %}{{ i }}{% endfor %}", &[]), Err(TemplateError::Render(_))));
    assert_eq!(render_template("{{ x }}", &[text("x", "a\0b")]), Err(TemplateError::Nul));
    // Optional parameters are the template's to test.
    assert_eq!(render_template("run{% if x is defined %} {{ x }}{% endif %}", &[]).unwrap(), "run");
}

/// The proof: bash runs the rendered line and receives each value byte for byte; nothing executes.
#[test]
fn bash_receives_values_verbatim() {
    let marker = std::path::Path::new("/tmp/ucim-template-pwned");
    let _ = std::fs::remove_file(marker);
    let params = vec![text("a", NASTY), text("b", "plain"), ("n".into(), TemplateValue::Integer(7))];
    let line = render_template("printf '%s\\0' {{ a }} {{ b }} {{ n }} --x={{ a }}", &params).unwrap();
    let out = Command::new("bash").arg("-c").arg(&line).env_clear().output().expect("bash runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let got: Vec<String> = out.stdout.split(|b| *b == 0).map(|s| String::from_utf8_lossy(s).into_owned()).collect();
    assert_eq!(got, vec![NASTY.to_string(), "plain".into(), "7".into(), format!("--x={NASTY}"), String::new()]);
    assert!(!marker.exists(), "a value executed");
}
