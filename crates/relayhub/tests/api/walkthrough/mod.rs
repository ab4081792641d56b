//! A Markdown walk-through as one shell script: its ```` ```sh ```` blocks in
//! order, in one `bash` (so a variable set in one block is there in the
//! next), and the answers its comments show checked against what each
//! command printed.
//!
//! A comment is an answer when it starts with `{`, `[` or `HTTP/`, on a line
//! of its own or after a command (`curl …   # {"status":"ready"}`); indented
//! comment lines continue it. It belongs to the last command above it in
//! the block. Two markers, HTML comments on the line before a block, change
//! how it runs:
//!
//! - `<!-- walkthrough: skip: WHY -->` leaves the block out (the server's
//!   start, which the test does itself; steps that need `sudo` or a human);
//! - `<!-- walkthrough: instead` … `-->` runs the lines between them in place
//!   of an interactive block, and checks the block's answers against their
//!   output, in order.

pub mod pattern;

use std::collections::HashMap;
use std::fmt::Write as _;

use pattern::{ParseError, Pattern};
use serde_json::Value;

const SKIP: &str = "<!-- walkthrough: skip:";
const INSTEAD: &str = "<!-- walkthrough: instead";

/// One ```` ```sh ```` block of a document.
#[derive(Debug)]
pub struct Block {
    pub file: String,
    /// The line of its opening fence (1-based).
    pub line: usize,
    pub body: Vec<String>,
    pub skip: Option<String>,
    /// The lines run in its place, with the line each is on.
    pub instead: Option<Vec<(usize, String)>>,
}

/// An answer a comment shows.
#[derive(Debug)]
pub struct Answer {
    pub block: usize,
    /// The comment's first line (1-based, in the block's file).
    pub line: usize,
    pub shown: String,
    pub pattern: Pattern,
}

/// The shell blocks of a Markdown document, with their markers.
pub fn blocks(file: &str, text: &str) -> Vec<Block> {
    let lines: Vec<&str> = text.lines().collect();
    let mut found = Vec::new();
    let (mut skip, mut instead) = (None, None);
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i].trim();
        if let Some(why) = line.strip_prefix(SKIP) {
            skip = Some(why.trim_end_matches("-->").trim().to_owned());
        } else if line == INSTEAD {
            let mut run = Vec::new();
            i += 1;
            while lines.get(i).is_some_and(|l| l.trim() != "-->") {
                run.push((i + 1, lines[i].to_owned()));
                i += 1;
            }
            instead = Some(run);
        } else if let Some(lang) = line.strip_prefix("```") {
            let indent = lines[i].len() - lines[i].trim_start().len();
            let start = i;
            i += 1;
            let mut body = Vec::new();
            while lines.get(i).is_some_and(|l| l.trim() != "```") {
                body.push(lines[i].get(indent..).unwrap_or("").to_owned());
                i += 1;
            }
            if lang == "sh" {
                found.push(Block {
                    file: file.to_owned(),
                    line: start + 1,
                    body,
                    skip: skip.take(),
                    instead: instead.take(),
                });
            }
            assert!(
                skip.is_none() && instead.is_none(),
                "{file}:{}: a walk-through marker before a block that is not sh",
                start + 1
            );
        } else if !line.is_empty() {
            assert!(
                skip.is_none() && instead.is_none(),
                "{file}:{}: a walk-through marker must come right before its block",
                i + 1
            );
        }
        i += 1;
    }
    found
}

/// The answers shown in the blocks that run, with the same substitutions
/// as their commands (an address the README shows is the test's).
pub fn answers(blocks: &[Block], substitutions: &[(String, String)]) -> Vec<Answer> {
    let mut found = Vec::new();
    for (index, block) in blocks.iter().enumerate().filter(|(_, b)| b.skip.is_none()) {
        let mut j = 0;
        while j < block.body.len() {
            let Some(start) = answer_start(&block.body[j]) else {
                j += 1;
                continue;
            };
            let first = j;
            let mut shown = substitute(start, substitutions);
            let pattern = loop {
                match Pattern::parse(&shown) {
                    Ok(pattern) => break pattern,
                    Err(ParseError::Incomplete) if block.body.get(j + 1).is_some_and(|l| l.trim().starts_with('#')) => {
                        j += 1;
                        shown.push_str(&substitute(block.body[j].trim().trim_start_matches('#'), substitutions));
                    }
                    Err(why) => panic!(
                        "{}:{}: the answer {shown:?} is not a pattern: {why:?}",
                        block.file,
                        block.line + 1 + first
                    ),
                }
            };
            found.push(Answer { block: index, line: block.line + 1 + first, shown, pattern });
            j += 1;
        }
    }
    found
}

fn substitute(line: &str, substitutions: &[(String, String)]) -> String {
    substitutions.iter().fold(line.to_owned(), |line, (from, to)| line.replace(from, to))
}

/// The text of an answer a line's comment shows, if it shows one.
fn answer_start(line: &str) -> Option<&str> {
    let comment = match line.trim_start().strip_prefix("# ") {
        Some(comment) => comment,
        None => line.split_once("  # ")?.1,
    };
    let comment = comment.trim_start();
    (comment.starts_with('{') || comment.starts_with('[') || comment.starts_with("HTTP/")).then_some(comment)
}

/// Where a line of the script came from.
#[derive(Debug, Clone, Copy)]
struct Origin {
    block: usize,
    line: usize,
    instead: bool,
}

/// The blocks as one script for `bash`, and where each of its lines came from.
pub struct Script {
    pub text: String,
    origins: Vec<Option<Origin>>,
}

/// Marks the start of each command's output: ASCII record separators
/// around the script line (`$LINENO` is the command's last line).
const MARK: char = '\u{1e}';

impl Script {
    /// The blocks that run, with `substitutions` (the README's addresses for
    /// the test's) applied to every line.
    pub fn new(blocks: &[Block], prelude: &str, substitutions: &[(String, String)]) -> Script {
        let mut text = String::new();
        let mut origins = Vec::new();
        let mut push = |text: &mut String, line: &str, origin: Option<Origin>| {
            text.push_str(&substitute(line, substitutions));
            text.push('\n');
            origins.push(origin);
        };
        for line in prelude.lines() {
            push(&mut text, line, None);
        }
        push(&mut text, "exec 2>&1", None);
        push(&mut text, "trap 'printf \"\\n\\036%s\\036\\n\" \"$LINENO\"' DEBUG", None);
        for (index, block) in blocks.iter().enumerate() {
            if block.skip.is_some() {
                continue;
            }
            match &block.instead {
                Some(run) => {
                    for (line, code) in run {
                        push(&mut text, code, Some(Origin { block: index, line: *line, instead: true }));
                    }
                }
                None => {
                    for (offset, code) in block.body.iter().enumerate() {
                        push(
                            &mut text,
                            code,
                            Some(Origin { block: index, line: block.line + 1 + offset, instead: false }),
                        );
                    }
                }
            }
        }
        Script { text, origins }
    }

    /// What each command printed: (the script line it ends on, its output).
    fn outputs(&self, output: &str) -> Vec<(usize, String)> {
        let mut found: Vec<(usize, String)> = Vec::new();
        let mut pieces = output.split(MARK);
        let _before_any_command = pieces.next();
        while let (Some(line), Some(printed)) = (pieces.next(), pieces.next()) {
            let Ok(line) = line.parse::<usize>() else { continue };
            let printed = printed.strip_prefix('\n').unwrap_or(printed);
            match found.last_mut() {
                // One mark per command of a pipeline: the same line.
                Some((last, text)) if *last == line => text.push_str(printed),
                _ => found.push((line, printed.to_owned())),
            }
        }
        found
    }

    fn origin(&self, script_line: usize) -> Option<Origin> {
        self.origins.get(script_line.checked_sub(1)?).copied().flatten()
    }

    /// The README line the script was at when it stopped, from its output.
    pub fn stopped_at(&self, blocks: &[Block], output: &str) -> String {
        let last = self.outputs(output).last().and_then(|(line, _)| self.origin(*line));
        match last {
            Some(origin) => format!("{}:{}", blocks[origin.block].file, origin.line),
            None => "before its first command".to_owned(),
        }
    }

    /// How the output differs from the answers shown: one entry per answer
    /// that does not match; empty when all do.
    pub fn check(&self, blocks: &[Block], answers: &[Answer], output: &str) -> Vec<String> {
        let outputs = self.outputs(output);
        // The output each answer is checked against: its command's, or all
        // of an `instead` block's. Answers to one output are taken in order.
        let mut failures = Vec::new();
        // JSON answers taken so far from each command's (block, line) output.
        let mut taken_from: HashMap<(usize, usize), usize> = HashMap::new();
        for answer in answers {
            let block = &blocks[answer.block];
            let mine = |origin: &Origin| origin.block == answer.block && (origin.instead || origin.line <= answer.line);
            let ours: Vec<(usize, &String)> = outputs
                .iter()
                .filter_map(|(line, text)| self.origin(*line).filter(mine).map(|o| (o.line, text)))
                .collect();
            let Some(last) = ours.iter().map(|(line, _)| *line).max() else {
                failures.push(format!("{}:{}: no command ran before this answer", block.file, answer.line));
                continue;
            };
            let (command, printed): (usize, String) = match block.instead {
                Some(_) => (0, ours.iter().map(|(_, text)| text.as_str()).collect()),
                None => (last, ours.iter().filter(|(line, _)| *line == last).map(|(_, text)| text.as_str()).collect()),
            };
            let mut report = |why: String| {
                let mut entry = format!("{}:{}: shows {}\n", block.file, answer.line, answer.shown);
                let _ = write!(entry, "  {why}\n  printed: {}", printed.trim());
                failures.push(entry);
            };
            if !answer.pattern.is_json() {
                if !answer.pattern.found_in(&printed) {
                    report("not found in that order".to_owned());
                }
                continue;
            }
            let taken = taken_from.entry((answer.block, command)).or_default();
            let values = json_values(&printed);
            match values.get(*taken) {
                Some(value) => {
                    let differences = answer.pattern.differences(value);
                    if !differences.is_empty() {
                        report(differences.join("; "));
                    }
                }
                None => report(format!("no JSON answer number {} in what it printed", *taken + 1)),
            }
            *taken += 1;
        }
        failures
    }
}

/// The JSON values a command printed, each starting a line.
fn json_values(printed: &str) -> Vec<Value> {
    let mut values = Vec::new();
    let mut at = 0;
    while at < printed.len() {
        let line_start = at == 0 || printed[..at].ends_with('\n');
        let c = printed[at..].chars().next().unwrap_or(' ');
        if line_start && (c == '{' || c == '[') {
            let mut stream = serde_json::Deserializer::from_str(&printed[at..]).into_iter::<Value>();
            if let Some(Ok(value)) = stream.next() {
                values.push(value);
                at += stream.byte_offset();
                continue;
            }
        }
        at += c.len_utf8();
    }
    values
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = concat!(
        "# A doc\n\n",
        "<!-- walkthrough: skip: the test starts it -->\n```sh\nserve\n```\n\n",
        "```sh\nX=1\nprintf '{\"x\":1,\\n\"y\":2}\\n'   # {\"x\":1,\n#   \"y\":2}\n```\n\n",
        "<!-- walkthrough: instead\necho '[1]'\n-->\n```sh\ninteractive\n# [1]\n```\n\n",
        "```json\n{}\n```\n",
    );

    #[test]
    fn a_document_gives_its_sh_blocks_markers_and_answers() {
        let blocks = blocks("doc.md", DOC);
        assert_eq!(blocks.len(), 3);
        assert_eq!(blocks[0].skip.as_deref(), Some("the test starts it"));
        assert_eq!(blocks[1].line, 8);
        assert_eq!(blocks[2].instead.as_ref().unwrap(), &[(15, "echo '[1]'".to_owned())]);
        let answers = answers(&blocks, &[]);
        assert_eq!(answers.len(), 2);
        assert_eq!((answers[0].block, answers[0].line), (1, 10));
        assert_eq!(answers[0].shown, "{\"x\":1,   \"y\":2}");
    }

    #[test]
    fn each_answer_is_checked_against_its_own_commands_output() {
        let blocks = blocks("doc.md", DOC);
        let answers = answers(&blocks, &[]);
        let script = Script::new(&blocks, "", &[]);
        assert!(!script.text.contains("serve"), "a skipped block does not run");
        assert!(script.text.contains("echo '[1]'") && !script.text.contains("interactive"));
        // As bash prints it: a mark per command (script lines 3, 4 and 6:
        // line 5 is the comment), then its output.
        let output = "\n\u{1e}3\u{1e}\n\n\u{1e}4\u{1e}\n{\"x\":1,\n\"y\":2}\n\n\u{1e}6\u{1e}\n[1]\n";
        assert_eq!(script.check(&blocks, &answers, output), Vec::<String>::new());
        let wrong = output.replace("\"y\":2", "\"y\":3");
        let failures = script.check(&blocks, &answers, &wrong);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert!(failures[0].starts_with("doc.md:10:"), "{failures:?}");
    }
}
