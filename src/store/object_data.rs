//! How an object's JSON is kept in either store: LZ4-compressed against a
//! dictionary of typical objects. A confirmed payment writes ~9.5 KB of JSON in
//! seven objects (PaymentMethod, PaymentIntent, charge, balance transaction and
//! three events that each embed a snapshot). Every byte of it goes to the WAL, to
//! new pages of the database file and through the kernel's page cache, and that,
//! more than the rows' number, is what a payment cost the database: compressed, the
//! same payment takes ~1.4 KB.

/// First byte of an object's stored data that is LZ4-compressed JSON, against
/// [`OBJECT_DICTIONARY`] (the block follows, its length before it). JSON text never
/// starts with a control character, so every other first byte means the JSON
/// itself: rows written before compression read as they are. Stored data names its
/// dictionary by this byte; a different dictionary would take another mark and
/// leave this one readable.
const PACKED_LZ4: u8 = 0x01;

/// The objects of one confirmed payment as payground writes them. Objects of a
/// kind share their keys, their order and most values, so against these a
/// payment's JSON compresses about sevenfold, where LZ4 alone finds only the
/// repeats inside each object (about 1.5-fold). Fixed for good: data written with
/// it needs exactly these bytes to be read.
const OBJECT_DICTIONARY: &[u8] = include_bytes!("object_dictionary.jsonl");

/// An object's JSON as a store keeps it: compressed when that saves bytes, which
/// it does for every object a payment writes; a tiny object stays as it is.
pub(crate) fn pack(json: &str) -> Vec<u8> {
    let compressed =
        lz4_flex::block::compress_prepend_size_with_dict(json.as_bytes(), OBJECT_DICTIONARY);
    if compressed.len() + 1 < json.len() {
        let mut packed = Vec::with_capacity(compressed.len() + 1);
        packed.push(PACKED_LZ4);
        packed.extend_from_slice(&compressed);
        packed
    } else {
        json.as_bytes().to_vec()
    }
}

/// Stored data that is not an object's JSON: a damaged row.
#[derive(Debug, thiserror::Error)]
pub(crate) enum UnpackError {
    #[error("stored object data does not decompress: {0}")]
    Decompress(#[from] lz4_flex::block::DecompressError),
    #[error("stored object data is not UTF-8: {0}")]
    Utf8(#[from] std::string::FromUtf8Error),
}

/// An object's JSON from what [`pack`] stored (or from JSON stored as it was).
pub(crate) fn unpack(stored: &[u8]) -> Result<String, UnpackError> {
    let bytes = match stored.split_first() {
        Some((&PACKED_LZ4, block)) => {
            lz4_flex::block::decompress_size_prepended_with_dict(block, OBJECT_DICTIONARY)?
        }
        _ => stored.to_vec(),
    };
    Ok(String::from_utf8(bytes)?)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every object a payment writes comes back byte for byte and much smaller;
    /// JSON stored before compression reads as it is; damage is an error, not a panic.
    #[test]
    fn objects_round_trip_and_old_rows_read_as_json() {
        let mut raw = 0;
        let mut packed = 0;
        for line in std::str::from_utf8(OBJECT_DICTIONARY)
            .expect("utf-8")
            .lines()
        {
            // Another payment's objects: other ids, amounts and times.
            let json = line.replace("00Y", "01Z").replace("1000", "4242");
            let data = pack(&json);
            assert_eq!(data.first(), Some(&PACKED_LZ4));
            assert_eq!(unpack(&data).expect("unpacks"), json);
            raw += json.len();
            packed += data.len();
        }
        assert!(packed * 4 < raw, "{packed} bytes packed from {raw}");

        let tiny = r#"{"id":"x"}"#;
        assert_eq!(pack(tiny), tiny.as_bytes());
        assert_eq!(unpack(tiny.as_bytes()).expect("reads"), tiny);

        let mut damaged = pack(&r#"{"a":1}"#.repeat(50));
        damaged.truncate(damaged.len() / 2);
        assert!(unpack(&damaged).is_err());
    }
}
