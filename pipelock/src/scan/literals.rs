//! Literal triggers: a set of literals, each arming one or more rules, searched with
//! Aho-Corasick automata small enough for its SIMD (Teddy) searcher. DLP uses them for key
//! prefixes and assignment keywords (injection keywords use [`super::keywords`]).

use aho_corasick::{AhoCorasick, AhoCorasickBuilder, MatchKind};

/// Literals per automaton: small enough for the SIMD prefilter.
const LITERALS_PER_AUTOMATON: usize = 24;

/// Literals that arm rules.
#[derive(Debug, Clone)]
pub struct LiteralTrigger {
    automata: Vec<AhoCorasick>,
    /// Per automaton, per literal: the rules it arms.
    rules: Vec<Vec<Vec<usize>>>,
}

impl LiteralTrigger {
    /// Builds the trigger from (literal, rule index) pairs. A literal named by several rules is
    /// searched once and arms them all.
    ///
    /// Matching is leftmost-longest and non-overlapping: where both `sk-` and `sk-ant-` start,
    /// only the longer literal arms its rules, which keeps the fast searcher usable.
    ///
    /// # Errors
    /// An automaton that cannot be built (too large).
    pub fn new<'a>(
        entries: impl IntoIterator<Item = (&'a str, usize)>,
        ascii_case_insensitive: bool,
    ) -> Result<Self, aho_corasick::BuildError> {
        let mut literals: Vec<&str> = Vec::new();
        let mut rules: Vec<Vec<usize>> = Vec::new();
        for (literal, rule) in entries {
            let existing = literals.iter().position(|l| {
                if ascii_case_insensitive {
                    l.eq_ignore_ascii_case(literal)
                } else {
                    *l == literal
                }
            });
            match existing {
                Some(at) if !rules[at].contains(&rule) => rules[at].push(rule),
                Some(_) => {}
                None => {
                    literals.push(literal);
                    rules.push(vec![rule]);
                }
            }
        }
        let mut automata = Vec::new();
        let mut grouped = Vec::new();
        for (group, group_rules) in literals
            .chunks(LITERALS_PER_AUTOMATON)
            .zip(rules.chunks(LITERALS_PER_AUTOMATON))
        {
            automata.push(
                AhoCorasickBuilder::new()
                    .match_kind(MatchKind::LeftmostLongest)
                    .ascii_case_insensitive(ascii_case_insensitive)
                    .build(group)?,
            );
            grouped.push(group_rules.to_vec());
        }
        Ok(Self {
            automata,
            rules: grouped,
        })
    }

    /// Marks in `armed` every rule whose literal occurs in `haystack`.
    pub fn arm(&self, haystack: &[u8], armed: &mut [bool]) {
        self.for_each_hit(haystack, |rule, _| {
            if let Some(slot) = armed.get_mut(rule) {
                *slot = true;
            }
        });
    }

    /// Calls `f(rule, range)` for every occurrence of a literal, once per rule it arms.
    pub fn for_each_hit(&self, haystack: &[u8], mut f: impl FnMut(usize, std::ops::Range<usize>)) {
        for (automaton, rules) in self.automata.iter().zip(&self.rules) {
            for hit in automaton.find_iter(haystack) {
                for &rule in &rules[hit.pattern().as_usize()] {
                    f(rule, hit.range());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::LiteralTrigger;

    #[test]
    fn shared_literals_arm_every_rule_and_groups_cover_all() {
        let mut entries: Vec<(String, usize)> =
            (0..60).map(|i| (format!("lit{i:02}_"), i)).collect();
        entries.push(("lit00_".to_string(), 60));
        let trigger = LiteralTrigger::new(entries.iter().map(|(l, r)| (l.as_str(), *r)), false)
            .expect("builds");
        let mut armed = vec![false; 61];
        trigger.arm(b"x lit00_ y lit59_ z", &mut armed);
        let on: Vec<usize> = (0..61).filter(|i| armed[*i]).collect();
        assert_eq!(on, vec![0, 59, 60]);

        let folded = LiteralTrigger::new([("password", 0)], true).expect("builds");
        let mut armed = vec![false];
        folded.arm(b"PassWord=x", &mut armed);
        assert!(armed[0]);
    }
}
