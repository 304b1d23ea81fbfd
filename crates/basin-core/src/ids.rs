//! The ids Basin mints: 32 hex digits, without dashes, so they fit file names and URLs.

/// An id that sorts by the time it was made (UUIDv7): runs, records, uploads, files.
pub fn ordered() -> String {
    uuid::Uuid::now_v7().simple().to_string()
}

/// An id with nothing to guess from (UUIDv4): temporary names beside a final one.
pub fn random() -> String {
    uuid::Uuid::new_v4().simple().to_string()
}

#[cfg(test)]
mod tests {
    #[test]
    fn ids_are_hex_and_ordered_ones_sort_by_time() {
        let a = super::ordered();
        std::thread::sleep(std::time::Duration::from_millis(2));
        let b = super::ordered();
        assert_eq!(a.len(), 32);
        assert!(a.chars().all(|c| c.is_ascii_hexdigit()));
        assert!(a < b, "{a} then {b}");
        assert_ne!(super::random(), super::random());
    }
}
