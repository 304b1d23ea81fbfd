//! Postgres's `numeric` in its binary (`send`) encoding, as an exact decimal.

/// A numeric's `send` encoding (ndigits, weight, sign, dscale, then base-10000 digits, the
/// first at 10000^weight) as the integer `value * 10^scale`, exactly, or why it cannot be.
pub(crate) fn numeric(v: &[u8], scale: i8) -> Result<i128, String> {
    let word = |i: usize| -> Result<i16, String> {
        v.get(i * 2..i * 2 + 2)
            .map(|b| i16::from_be_bytes([b[0], b[1]]))
            .ok_or_else(|| "a truncated numeric".to_string())
    };
    let ndigits = word(0)?;
    let weight = i32::from(word(1)?);
    let sign = word(2)? as u16;
    match sign {
        0x0000 | 0x4000 => {}
        0xC000 => return Err("the numeric is NaN, which a decimal cannot store".into()),
        _ => return Err("the numeric is infinite, which a decimal cannot store".into()),
    }
    let overflow = || "the numeric does not fit a 38-digit decimal".to_string();
    let mut value: i128 = 0;
    for i in 0..i32::from(ndigits.max(0)) {
        let digit = i128::from(word(4 + i as usize)?);
        // This digit counts 10^(4 * (weight - i)); scaled, 10^(that + scale).
        let exponent = 4 * (weight - i) + i32::from(scale);
        let part = if exponent >= 0 {
            10i128
                .checked_pow(exponent as u32)
                .and_then(|p| p.checked_mul(digit))
                .ok_or_else(overflow)?
        } else {
            let divisor = 10i128.checked_pow((-exponent) as u32).unwrap_or(i128::MAX);
            if digit % divisor != 0 {
                return Err(format!("the numeric has more than {scale} decimal places"));
            }
            digit / divisor
        };
        value = value.checked_add(part).ok_or_else(overflow)?;
    }
    Ok(if sign == 0x4000 { -value } else { value })
}

#[cfg(test)]
mod tests {
    use super::numeric;

    /// A numeric's `send` bytes: ndigits, weight, sign, dscale, base-10000 digits.
    fn numeric_bytes(weight: i16, negative: bool, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((digits.len() as i16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(if negative { 0x4000u16 } else { 0 }.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics_decode_exactly_at_the_column_scale() {
        // 12345.678 as numeric(10,3)
        assert_eq!(
            numeric(&numeric_bytes(1, false, 3, &[1, 2345, 6780]), 3),
            Ok(12_345_678)
        );
        // -12345.678 at scale 5: two more zeros
        assert_eq!(
            numeric(&numeric_bytes(1, true, 3, &[1, 2345, 6780]), 5),
            Ok(-1_234_567_800)
        );
        // 0 has no digits; 1e-10 is the digit 100 at 10000^-3
        assert_eq!(numeric(&numeric_bytes(0, false, 0, &[]), 2), Ok(0));
        assert_eq!(numeric(&numeric_bytes(-3, false, 10, &[100]), 10), Ok(1));
        // The largest numeric(38,10): 28 nines, a point, 10 nines.
        let nines = numeric_bytes(
            6,
            false,
            10,
            &[9999; 9].iter().copied().chain([9900]).collect::<Vec<_>>(),
        );
        assert_eq!(numeric(&nines, 10), Ok(10i128.pow(38) - 1));
        // A digit below the scale cannot be stored exactly.
        assert!(numeric(&numeric_bytes(-1, false, 4, &[1234]), 2).is_err());
        let nan = [0, 0, 0, 0, 0xC0, 0, 0, 0];
        assert!(numeric(&nan, 2).unwrap_err().contains("NaN"));
    }
}
