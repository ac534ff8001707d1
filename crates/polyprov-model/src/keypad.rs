//! Typing a MAC address on a Poly phone's keypad at the boot-time password prompt, and reading
//! keypad events back the way the phone does.
//!
//! Digits are typed in numeric mode. Letters a–f are multi-tap: key 2 once/twice/three times for
//! a/b/c, key 3 for d/e/f; two letters in a row on the same key need a pause for the cursor to
//! return (the seed says two seconds). The mode key cycles through three modes; the order differs
//! between sources (domain.md §7), so both are offered:
//! - [`ModeCycle::Seed`] numeric → lower → upper → numeric: one press from numeric gives lower case,
//!   two more return to numeric. This reproduces the vendor FAQ's worked example.
//! - [`ModeCycle::Labels`] numeric → UPPER → lower → numeric, as the key labels `1->Aa`, `A->a1`,
//!   `a->1A` read on third-party pages.

use crate::Mac;
use std::fmt;

/// The modes the mode key cycles through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Numeric,
    Lower,
    Upper,
}

/// Which order the mode key goes through the modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ModeCycle {
    /// numeric → lower → upper (the vendor FAQ's table).
    #[default]
    Seed,
    /// numeric → upper → lower (the key labels).
    Labels,
}

impl ModeCycle {
    fn order(self) -> [Mode; 3] {
        match self {
            ModeCycle::Seed => [Mode::Numeric, Mode::Lower, Mode::Upper],
            ModeCycle::Labels => [Mode::Numeric, Mode::Upper, Mode::Lower],
        }
    }

    /// Presses of the mode key to go from one mode to another.
    pub fn presses(self, from: Mode, to: Mode) -> u8 {
        let o = self.order();
        let i = o.iter().position(|m| *m == from).unwrap_or(0);
        let j = o.iter().position(|m| *m == to).unwrap_or(0);
        ((j + 3 - i) % 3) as u8
    }

    /// The mode after one press.
    pub fn next(self, m: Mode) -> Mode {
        let o = self.order();
        let i = o.iter().position(|x| *x == m).unwrap_or(0);
        o[(i + 1) % 3]
    }
}

/// Letter case to type the MAC's letters in (whether the check is case-sensitive is disputed).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LetterCase {
    #[default]
    Lower,
    Upper,
}

/// The letters on each key (ITU E.161); 1 and 0 carry none.
pub fn letters(key: char) -> &'static str {
    match key {
        '2' => "abc",
        '3' => "def",
        '4' => "ghi",
        '5' => "jkl",
        '6' => "mno",
        '7' => "pqrs",
        '8' => "tuv",
        '9' => "wxyz",
        _ => "",
    }
}

/// One thing to do at the keypad.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Press the mode (input modifier) key `count` times.
    Mode { count: u8 },
    /// Press `key` `count` times quickly.
    Press { key: char, count: u8 },
    /// Wait for the cursor to return before pressing the same key again.
    Wait { seconds: u8 },
}

/// The actions that type one character.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CharSteps {
    pub ch: char,
    pub actions: Vec<Action>,
}

/// Seconds to wait between two letters on the same key (the seed says two; the user guide one).
pub const SAME_KEY_WAIT_SECONDS: u8 = 2;

/// The keystrokes that type `mac` (12 hex digits) at the password prompt, starting in numeric mode.
pub fn keystrokes(mac: Mac, cycle: ModeCycle, case: LetterCase) -> Vec<CharSteps> {
    let text = match case {
        LetterCase::Lower => mac.to_string(),
        LetterCase::Upper => mac.to_string().to_uppercase(),
    };
    type_text(&text, cycle).unwrap_or_default()
}

/// The keystrokes for any text of ASCII letters and digits (an admin password, say); `None` when
/// it has a character the keypad cannot type this way.
pub fn type_text(text: &str, cycle: ModeCycle) -> Option<Vec<CharSteps>> {
    if !text.chars().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let text: Vec<char> = text.chars().collect();
    let mut out: Vec<CharSteps> = Vec::new();
    let mut mode = Mode::Numeric;
    for (i, &ch) in text.iter().enumerate() {
        let mut actions = Vec::new();
        let (want, key, count) = key_for(ch);
        let presses = cycle.presses(mode, want);
        if presses > 0 {
            actions.push(Action::Mode { count: presses });
            mode = want;
        }
        actions.push(Action::Press { key, count });
        // A letter followed by a letter on the same key: wait, or the phone would keep cycling.
        if want != Mode::Numeric
            && let Some(&next) = text.get(i + 1)
        {
            let (next_mode, next_key, _) = key_for(next);
            if next_mode == want && next_key == key {
                actions.push(Action::Wait {
                    seconds: SAME_KEY_WAIT_SECONDS,
                });
            }
        }
        out.push(CharSteps { ch, actions });
    }
    Some(out)
}

/// Mode, key and press count for a hex digit.
fn key_for(ch: char) -> (Mode, char, u8) {
    if ch.is_ascii_digit() {
        return (Mode::Numeric, ch, 1);
    }
    let lower = ch.to_ascii_lowercase();
    let mode = if ch.is_ascii_uppercase() {
        Mode::Upper
    } else {
        Mode::Lower
    };
    for key in ['2', '3', '4', '5', '6', '7', '8', '9'] {
        if let Some(i) = letters(key).find(lower) {
            return (mode, key, i as u8 + 1);
        }
    }
    (Mode::Numeric, ch, 1)
}

/// A raw keypad event, as the phone's password prompt receives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyEvent {
    Mode,
    Key(char),
    /// The multi-tap timeout passed: the pending letter is committed.
    Pause,
}

/// The events behind a list of steps.
pub fn events(steps: &[CharSteps]) -> Vec<KeyEvent> {
    let mut out = Vec::new();
    for s in steps {
        for a in &s.actions {
            match *a {
                Action::Mode { count } => out.extend((0..count).map(|_| KeyEvent::Mode)),
                Action::Press { key, count } => {
                    out.extend((0..count).map(|_| KeyEvent::Key(key)));
                }
                Action::Wait { .. } => out.push(KeyEvent::Pause),
            }
        }
    }
    out
}

/// Decodes keypad events into text the way a phone's multi-tap entry does: in a letter mode,
/// pressing the same key again before a pause cycles its letters; another key, the mode key or a
/// pause commits the letter. Keys without letters type their digit in any mode.
pub fn decode(events: &[KeyEvent], cycle: ModeCycle) -> String {
    let mut out = String::new();
    let mut mode = Mode::Numeric;
    let mut pending: Option<(char, usize)> = None;
    let commit = |pending: &mut Option<(char, usize)>, out: &mut String, mode: Mode| {
        if let Some((key, n)) = pending.take() {
            let l = letters(key);
            if let Some(c) = l.chars().nth((n - 1) % l.len().max(1)) {
                out.push(if mode == Mode::Upper {
                    c.to_ascii_uppercase()
                } else {
                    c
                });
            }
        }
    };
    for e in events {
        match *e {
            KeyEvent::Mode => {
                commit(&mut pending, &mut out, mode);
                mode = cycle.next(mode);
            }
            KeyEvent::Pause => commit(&mut pending, &mut out, mode),
            KeyEvent::Key(k) => {
                if mode == Mode::Numeric || letters(k).is_empty() {
                    commit(&mut pending, &mut out, mode);
                    out.push(k);
                } else {
                    match pending {
                        Some((pk, n)) if pk == k => pending = Some((k, n + 1)),
                        _ => {
                            commit(&mut pending, &mut out, mode);
                            pending = Some((k, 1));
                        }
                    }
                }
            }
        }
    }
    commit(&mut pending, &mut out, mode);
    out
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Mode { count: 1 } => f.write_str("press the mode key once"),
            Action::Mode { count } => write!(f, "press the mode key {} times", count),
            Action::Press { key, count: 1 } => write!(f, "press '{key}' once"),
            Action::Press { key, count } => write!(f, "press '{key}' {count} times quickly"),
            Action::Wait { seconds } => {
                write!(f, "wait {seconds} seconds for the cursor to return")
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The vendor FAQ's table for 00-04-F2-AA-81-4C, row by row.
    #[test]
    fn reproduces_the_seed_table() {
        use Action::*;
        let mac: Mac = "00-04-F2-AA-81-4C".parse().unwrap();
        let steps = keystrokes(mac, ModeCycle::Seed, LetterCase::Lower);
        let want: Vec<(char, Vec<Action>)> = vec![
            ('0', vec![Press { key: '0', count: 1 }]),
            ('0', vec![Press { key: '0', count: 1 }]),
            ('0', vec![Press { key: '0', count: 1 }]),
            ('4', vec![Press { key: '4', count: 1 }]),
            ('f', vec![Mode { count: 1 }, Press { key: '3', count: 3 }]),
            ('2', vec![Mode { count: 2 }, Press { key: '2', count: 1 }]),
            (
                'a',
                vec![
                    Mode { count: 1 },
                    Press { key: '2', count: 1 },
                    Wait { seconds: 2 },
                ],
            ),
            ('a', vec![Press { key: '2', count: 1 }]),
            ('8', vec![Mode { count: 2 }, Press { key: '8', count: 1 }]),
            ('1', vec![Press { key: '1', count: 1 }]),
            ('4', vec![Press { key: '4', count: 1 }]),
            ('c', vec![Mode { count: 1 }, Press { key: '2', count: 3 }]),
        ];
        let got: Vec<(char, Vec<Action>)> = steps.into_iter().map(|s| (s.ch, s.actions)).collect();
        assert_eq!(got, want);
    }

    #[test]
    fn the_label_cycle_needs_two_presses_for_lower_case() {
        let mac: Mac = "0004f2aa814c".parse().unwrap();
        let steps = keystrokes(mac, ModeCycle::Labels, LetterCase::Lower);
        assert_eq!(steps[4].actions[0], Action::Mode { count: 2 });
        assert_eq!(steps[5].actions[0], Action::Mode { count: 1 });
        let upper = keystrokes(mac, ModeCycle::Labels, LetterCase::Upper);
        assert_eq!(upper[4].ch, 'F');
        assert_eq!(upper[4].actions[0], Action::Mode { count: 1 });
    }

    #[test]
    fn without_the_wait_two_letters_on_one_key_become_one() {
        let ev = [KeyEvent::Mode, KeyEvent::Key('2'), KeyEvent::Key('2')];
        assert_eq!(decode(&ev, ModeCycle::Seed), "b");
    }

    proptest! {
        #[test]
        fn typed_text_decodes_back(text in "[a-zA-Z0-9]{0,16}", labels in any::<bool>()) {
            let cycle = if labels { ModeCycle::Labels } else { ModeCycle::Seed };
            let steps = type_text(&text, cycle).unwrap();
            prop_assert_eq!(decode(&events(&steps), cycle), text);
        }

        #[test]
        fn typed_macs_decode_back(bytes in any::<[u8; 6]>().prop_filter("non-zero", |b| *b != [0; 6]),
                                  labels in any::<bool>(), upper in any::<bool>()) {
            let mac = Mac::from_bytes(bytes);
            let cycle = if labels { ModeCycle::Labels } else { ModeCycle::Seed };
            let case = if upper { LetterCase::Upper } else { LetterCase::Lower };
            let typed = decode(&events(&keystrokes(mac, cycle, case)), cycle);
            let want = if upper { mac.to_string().to_uppercase() } else { mac.to_string() };
            prop_assert_eq!(typed, want);
        }
    }
}
