//! Command-line templates: an operator writes `python3 {{ script }} --n {{ n }}`; ucim fills it with a job's
//! parameters so that every value lands in the script as exactly one inert shell word.
//!
//! Escaping is by construction, not by the template author's care. Every `{{ … }}` output goes through
//! one formatter that emits a placeholder, never the value. The rendered text is then scanned as bash
//! would read it: a placeholder inside quotes, backticks, `${…}`, `$((…))` or after a heredoc is refused
//! (inside `"…"` a single-quoted word would be no protection at all). Only then are the placeholders
//! replaced: text as one single-quoted word (`bash_quote`), integers, floats and booleans from their typed
//! values. The engine (minijinja) has no loader, so templates cannot read files, and a fuel limit stops
//! runaway loops.

use std::sync::{Arc, Mutex};

use minijinja::value::{Value, ValueKind};
use minijinja::{AutoEscape, Environment, ErrorKind, UndefinedBehavior};

use crate::script::bash_quote;

/// A placeholder is `OPEN index CLOSE`; these private-use characters may not appear in templates.
const OPEN: char = '\u{E000}';
const CLOSE: char = '\u{E001}';
/// Enough for loops over a few hundred items; stops a template that would run away.
const FUEL: u64 = 50_000;
/// Longest rendered command line accepted.
const MAX_OUTPUT: usize = 256 * 1024;

/// A job parameter as the template sees it. `Text` covers free text and resolved file paths.
#[derive(Debug, Clone, PartialEq)]
pub enum TemplateValue {
    Text(String),
    Integer(i64),
    Float(f64),
    Bool(bool),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TemplateError {
    #[error("template does not parse: {0}")]
    Syntax(String),
    #[error("{0}")]
    Render(String),
    #[error("the template places a value {0}; values may only stand as words of their own (e.g. `cmd {{{{ x }}}}`, `--opt={{{{ x }}}}`)")]
    UnsafePlacement(&'static str),
    #[error("a value contains a NUL byte, which no command line can hold")]
    Nul,
    #[error("the rendered command line is longer than {MAX_OUTPUT} bytes")]
    TooLong,
}

fn environment(collected: Arc<Mutex<Vec<Value>>>) -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_auto_escape_callback(|_| AutoEscape::None);
    env.set_keep_trailing_newline(true);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(32);
    env.set_formatter(move |out, _state, value| {
        let mut values = collected.lock().unwrap_or_else(|p| p.into_inner());
        let index = values.len();
        values.push(value.clone());
        out.write_str(&format!("{OPEN}{index}{CLOSE}"))
            .map_err(|_| minijinja::Error::new(ErrorKind::WriteFailure, "cannot write"))
    });
    env
}

/// Checks that `template` parses and uses no reserved characters (for config validation).
pub fn check_template(template: &str) -> Result<(), TemplateError> {
    if template.contains([OPEN, CLOSE, '\0']) {
        return Err(TemplateError::Syntax("contains NUL or the reserved characters U+E000/U+E001".into()));
    }
    let env = environment(Arc::default());
    env.template_from_str(template).map(|_| ()).map_err(|e| TemplateError::Syntax(describe(&e)))
}

fn describe(e: &minijinja::Error) -> String {
    let mut text = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        text.push_str(&format!(": {s}"));
        source = s.source();
    }
    text
}

/// Renders `template` with `params` (name → value). Every value reaches the output as one shell word.
pub fn render_template(template: &str, params: &[(String, TemplateValue)]) -> Result<String, TemplateError> {
    check_template(template)?;
    let collected: Arc<Mutex<Vec<Value>>> = Arc::default();
    let env = environment(collected.clone());
    let mut ctx = std::collections::BTreeMap::new();
    for (name, value) in params {
        let v = match value {
            TemplateValue::Text(s) => {
                if s.contains('\0') {
                    return Err(TemplateError::Nul);
                }
                Value::from(s.as_str())
            }
            TemplateValue::Integer(i) => Value::from(*i),
            TemplateValue::Float(f) => Value::from(*f),
            TemplateValue::Bool(b) => Value::from(*b),
        };
        ctx.insert(name.as_str(), v);
    }
    let tmpl = env.template_from_str(template).map_err(|e| TemplateError::Syntax(describe(&e)))?;
    let text = tmpl.render(&ctx).map_err(|e| match e.kind() {
        ErrorKind::UndefinedError => TemplateError::Render(format!("the application needs a parameter the job does not have ({})", describe(&e))),
        _ => TemplateError::Render(describe(&e)),
    })?;
    let values = std::mem::take(&mut *collected.lock().unwrap_or_else(|p| p.into_inner()));
    check_placements(&text)?;
    let mut out = String::with_capacity(text.len() + 64);
    let mut rest = text.as_str();
    while let Some(start) = rest.find(OPEN) {
        out.push_str(&rest[..start]);
        let after = &rest[start + OPEN.len_utf8()..];
        let end = after.find(CLOSE).ok_or(TemplateError::Render("malformed placeholder".into()))?;
        let index: usize = after[..end].parse().map_err(|_| TemplateError::Render("malformed placeholder".into()))?;
        let value = values.get(index).ok_or(TemplateError::Render("malformed placeholder".into()))?;
        out.push_str(&word(value)?);
        rest = &after[end + CLOSE.len_utf8()..];
        if out.len() > MAX_OUTPUT {
            return Err(TemplateError::TooLong);
        }
    }
    out.push_str(rest);
    if out.len() > MAX_OUTPUT {
        return Err(TemplateError::TooLong);
    }
    Ok(out)
}

/// One value as shell text: typed scalars bare (their text is digits, signs, `.`, `e`, letters only),
/// strings quoted, sequences as one quoted word per item.
fn word(value: &Value) -> Result<String, TemplateError> {
    match value.kind() {
        // minijinja prints booleans Python-style (`True`); the typed value is `true`/`false`, as exported.
        ValueKind::Bool => Ok(value.is_true().to_string()),
        ValueKind::Number => {
            let text = value.to_string();
            if text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'+')) {
                Ok(text)
            } else {
                Ok(bash_quote(&text))
            }
        }
        ValueKind::String => {
            let s = value.as_str().unwrap_or_default();
            if s.contains('\0') {
                return Err(TemplateError::Nul);
            }
            Ok(bash_quote(s))
        }
        ValueKind::Seq => {
            let items = value.try_iter().map_err(|e| TemplateError::Render(e.to_string()))?;
            let words: Result<Vec<String>, _> = items.map(|v| word(&v)).collect();
            Ok(words?.join(" "))
        }
        other => Err(TemplateError::Render(format!("a value of kind {other} cannot be placed in a command line"))),
    }
}

#[derive(Clone, Copy, PartialEq)]
enum Ctx {
    /// Top level, a subshell `(…)` or a command substitution `$(…)`: a quoted word is a word here.
    Command,
    Single,
    Double,
    Backtick,
    Brace,
    /// `$((…))` with its count of open inner parentheses.
    Arith(u32),
}

/// Scans rendered text as bash would and refuses placeholders anywhere a single-quoted word would not
/// stand on its own. Conservative: doubtful places are refused, never allowed.
fn check_placements(text: &str) -> Result<(), TemplateError> {
    let mut stack = vec![Ctx::Command];
    let mut heredoc = false;
    let mut word_start = true;
    let chars: Vec<char> = text.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        let next = chars.get(i + 1).copied();
        let top = *stack.last().expect("never empty");
        if c == OPEN {
            let place = match top {
                _ if heredoc => Some("after a heredoc (<<)"),
                Ctx::Command if stack.iter().all(|c| *c == Ctx::Command) => None,
                Ctx::Single => Some("inside single quotes"),
                Ctx::Double => Some("inside double quotes"),
                Ctx::Backtick => Some("inside backticks"),
                Ctx::Brace => Some("inside ${...}"),
                Ctx::Arith(_) => Some("inside $((...))"),
                Ctx::Command => Some("inside quotes"),
            };
            if let Some(place) = place {
                return Err(TemplateError::UnsafePlacement(place));
            }
            while i < chars.len() && chars[i] != CLOSE {
                i += 1;
            }
            i += 1;
            word_start = false;
            continue;
        }
        let dollar_paren = c == '$' && next == Some('(');
        let dollar_arith = dollar_paren && chars.get(i + 2) == Some(&'(');
        match top {
            Ctx::Single => {
                if c == '\'' {
                    stack.pop();
                }
            }
            Ctx::Double | Ctx::Brace | Ctx::Backtick | Ctx::Command | Ctx::Arith(_) => {
                let closes = match top {
                    Ctx::Double => c == '"',
                    Ctx::Brace => c == '}',
                    Ctx::Backtick => c == '`',
                    Ctx::Command => c == ')' && stack.len() > 1,
                    _ => false,
                };
                if c == '\\' {
                    i += 1; // the escaped character is literal
                } else if closes {
                    stack.pop();
                } else if let Ctx::Arith(depth) = top {
                    match c {
                        '(' => *stack.last_mut().expect("non-empty") = Ctx::Arith(depth + 1),
                        ')' if depth > 0 => *stack.last_mut().expect("non-empty") = Ctx::Arith(depth - 1),
                        ')' if next == Some(')') => {
                            stack.pop();
                            i += 1;
                        }
                        _ => {}
                    }
                } else if dollar_arith {
                    stack.push(Ctx::Arith(0));
                    i += 2;
                } else if dollar_paren {
                    stack.push(Ctx::Command);
                    i += 1;
                } else if c == '$' && next == Some('{') {
                    stack.push(Ctx::Brace);
                    i += 1;
                } else if c == '`' {
                    stack.push(Ctx::Backtick);
                } else if c == '"' && top != Ctx::Double {
                    stack.push(Ctx::Double);
                } else if c == '\'' && matches!(top, Ctx::Command | Ctx::Brace) {
                    stack.push(Ctx::Single);
                } else if top == Ctx::Command {
                    if c == '(' {
                        stack.push(Ctx::Command);
                    } else if c == '#' && word_start {
                        while i < chars.len() && chars[i] != '\n' {
                            i += 1;
                        }
                        continue;
                    } else if c == '<' && next == Some('<') && chars.get(i + 2) != Some(&'<') {
                        heredoc = true;
                    } else if c == '<' && next == Some('<') {
                        i += 2; // here-string `<<<`: its word is an ordinary word
                    }
                }
            }
        }
        word_start = c.is_whitespace() || matches!(c, ';' | '&' | '|' | '(' | ')');
        i += 1;
    }
    Ok(())
}

#[cfg(test)]
#[path = "template_tests.rs"]
mod tests;
