//! Room codes: the shared secret that admits a Sender to a Receiver.
//!
//! A code is 16 symbols of Crockford's base32 (digits and letters without I, L, O and U, so
//! that it survives being read aloud or copied by hand; <https://www.crockford.com/base32.html>),
//! shown in four groups: `7QF2-M9KD-XW3C-T0ZB`. That is 80 random bits. Parsing is forgiving
//! in Crockford's way: case, spaces and dashes do not matter, and `I`/`L` read as `1`, `O` as
//! `0`.

use std::fmt;

/// Symbols of a code, in value order (Crockford's base32).
const ALPHABET: &[u8; 32] = b"0123456789ABCDEFGHJKMNPQRSTVWXYZ";
/// Symbols in a code.
pub const CODE_LEN: usize = 16;
/// Symbols per group when shown.
const GROUP: usize = 4;

/// Why a typed code was not accepted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomCodeError {
    /// A character that is not part of any code.
    BadCharacter(char),
    /// Not 16 symbols (how many there were).
    WrongLength(usize),
}

impl fmt::Display for RoomCodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::BadCharacter(c) => write!(f, "'{c}' is not part of a room code"),
            Self::WrongLength(n) => {
                write!(f, "a room code has {CODE_LEN} letters and digits, not {n}")
            }
        }
    }
}

impl std::error::Error for RoomCodeError {}

/// A valid room code, in canonical form (16 upper-case symbols, no dashes).
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct RoomCode([u8; CODE_LEN]);

impl RoomCode {
    /// A new code from 80 random bits.
    pub fn random() -> Self {
        let bits: u128 = rand::random::<u128>() >> 48;
        Self::from_bits(bits)
    }

    /// The code of the low 80 bits of `bits`.
    pub fn from_bits(bits: u128) -> Self {
        let mut out = [0u8; CODE_LEN];
        for (i, c) in out.iter_mut().enumerate() {
            let shift = 5 * (CODE_LEN - 1 - i);
            *c = ALPHABET[((bits >> shift) & 31) as usize];
        }
        Self(out)
    }

    /// Reads a typed code: case, spaces and dashes are ignored; `I` and `L` mean `1`, `O`
    /// means `0`.
    pub fn parse(s: &str) -> Result<Self, RoomCodeError> {
        let mut out = [0u8; CODE_LEN];
        let mut n = 0;
        for ch in s.chars() {
            let c = match ch.to_ascii_uppercase() {
                ' ' | '-' | '\t' => continue,
                'I' | 'L' => '1',
                'O' => '0',
                c => c,
            };
            if !c.is_ascii() || !ALPHABET.contains(&(c as u8)) {
                return Err(RoomCodeError::BadCharacter(ch));
            }
            if n < CODE_LEN {
                out[n] = c as u8;
            }
            n += 1;
        }
        if n != CODE_LEN {
            return Err(RoomCodeError::WrongLength(n));
        }
        Ok(Self(out))
    }

    /// The canonical 16 symbols (what the key is derived from).
    pub fn as_str(&self) -> &str {
        // Every byte comes from ALPHABET, which is ASCII.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl fmt::Display for RoomCode {
    /// Grouped for reading: `7QF2-M9KD-XW3C-T0ZB`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, chunk) in self.0.chunks(GROUP).enumerate() {
            if i > 0 {
                f.write_str("-")?;
            }
            f.write_str(std::str::from_utf8(chunk).unwrap_or(""))?;
        }
        Ok(())
    }
}

impl fmt::Debug for RoomCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // A secret: never printed whole in logs.
        write!(f, "RoomCode({}…)", &self.as_str()[..2])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn display_and_forgiving_parse() {
        let c = RoomCode::from_bits(0x1234_5678_9ABC_DEF0_1234);
        let shown = c.to_string();
        assert_eq!(shown.len(), 19);
        assert_eq!(RoomCode::parse(&shown), Ok(c.clone()));
        assert_eq!(
            RoomCode::parse(&shown.to_lowercase().replace('-', " ")),
            Ok(c)
        );
        assert_eq!(
            RoomCode::parse("oooo-iiii-llll-0000").unwrap().as_str(),
            "0000111111110000"
        );
    }

    #[test]
    fn errors_say_what_is_wrong() {
        assert_eq!(
            RoomCode::parse("ABCD-EFGH-JKMN-PQR"),
            Err(RoomCodeError::WrongLength(15))
        );
        assert_eq!(
            RoomCode::parse("ABCD-EFGH-JKMN-PQRU"),
            Err(RoomCodeError::BadCharacter('U'))
        );
        assert_eq!(
            RoomCode::parse("ABCD-EFGH-JKMN-PQRSÉ"),
            Err(RoomCodeError::BadCharacter('É'))
        );
        assert!(RoomCodeError::WrongLength(3).to_string().contains("16"));
    }

    #[test]
    fn random_codes_differ() {
        assert_ne!(RoomCode::random(), RoomCode::random());
    }

    proptest! {
        #[test]
        fn every_code_round_trips(bits in any::<u128>()) {
            let c = RoomCode::from_bits(bits & ((1u128 << 80) - 1));
            prop_assert_eq!(RoomCode::parse(&c.to_string()), Ok(c.clone()));
            prop_assert_eq!(RoomCode::parse(c.as_str()), Ok(c));
        }

        #[test]
        fn parse_never_panics(s in ".{0,40}") {
            let _ = RoomCode::parse(&s);
        }
    }
}
