//! Stripe's webhook signatures: the `Stripe-Signature` header a receiver's
//! `constructEvent` verifies.

use super::*;

// ---------------------------------------------------------------------------
// Signatures.

pub(super) type HmacSha256 = Hmac<Sha256>;

pub(super) fn hmac_hex(key: &[u8], timestamp: i64, payload: &[u8]) -> String {
    // HMAC takes keys of any length; `new_from_slice` cannot fail for it.
    let Ok(mut mac) = HmacSha256::new_from_slice(key) else {
        return String::new();
    };
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(payload);
    hex::encode(mac.finalize().into_bytes())
}

/// The `v1` scheme: HMAC-SHA256 keyed with the whole `whsec_...` string, over
/// `"<timestamp>.<payload>"`, in lowercase hex.
pub fn v1_signature(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    hmac_hex(secret.as_bytes(), timestamp, payload)
}

/// The `Stripe-Signature` header. Like Stripe test mode it adds a `v0` signature
/// made with another key, so verifiers learn to ignore schemes they do not know.
pub fn signature_header(secret: &str, timestamp: i64, payload: &[u8]) -> String {
    let v0_key = format!("payground-v0 {secret}");
    format!(
        "t={timestamp},v1={},v0={}",
        v1_signature(secret, timestamp, payload),
        hmac_hex(v0_key.as_bytes(), timestamp, payload)
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Computed independently with Python's hmac module:
    /// `hmac.new(b"whsec_test_secret", b"1700000000." + body, hashlib.sha256).hexdigest()`.
    const KNOWN_V1: &str = "0c8670ed117751cc551a20e35839447075c42800ea3cf3e8a2fbda99cd1e6edd";

    #[test]
    fn v1_signature_matches_an_independent_vector() {
        let body = br#"{"id":"evt_1","object":"event"}"#;
        assert_eq!(
            v1_signature("whsec_test_secret", 1_700_000_000, body),
            KNOWN_V1
        );
    }

    /// HMAC-SHA256 written out from its definition (RFC 2104) on plain SHA-256, to
    /// check `v1_signature` against something that shares no HMAC code with it.
    fn hmac_by_hand(key: &[u8], message: &[u8]) -> String {
        use sha2::Digest;
        let mut block = [0u8; 64];
        if key.len() > 64 {
            block[..32].copy_from_slice(&Sha256::digest(key));
        } else {
            block[..key.len()].copy_from_slice(key);
        }
        let inner: Vec<u8> = block
            .iter()
            .map(|b| b ^ 0x36)
            .chain(message.iter().copied())
            .collect();
        let inner_hash = Sha256::digest(&inner);
        let outer: Vec<u8> = block
            .iter()
            .map(|b| b ^ 0x5c)
            .chain(inner_hash.iter().copied())
            .collect();
        hex::encode(Sha256::digest(&outer))
    }

    #[test]
    fn v1_signature_matches_hmac_computed_by_hand() {
        // RFC 4231, test case 2: the construction itself.
        assert_eq!(
            hmac_by_hand(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let secret = "whsec_0123456789ABCDEFGHIJKLMNOPQRSTUV";
        let body = r#"{"id":"evt_2","object":"event","data":{"object":{"name":"Zoë"}}}"#;
        let message = format!("1796126400.{body}");
        assert_eq!(
            v1_signature(secret, 1_796_126_400, body.as_bytes()),
            hmac_by_hand(secret.as_bytes(), message.as_bytes())
        );
    }

    #[test]
    fn header_has_t_v1_and_a_different_v0() {
        let body = br#"{"id":"evt_1","object":"event"}"#;
        let header = signature_header("whsec_test_secret", 1_700_000_000, body);
        let parts: Vec<(&str, &str)> = header
            .split(',')
            .filter_map(|p| p.split_once('='))
            .collect();
        assert_eq!(parts[0], ("t", "1700000000"));
        assert_eq!(parts[1], ("v1", KNOWN_V1));
        assert_eq!(parts[2].0, "v0");
        assert_eq!(parts[2].1.len(), 64);
        assert_ne!(parts[2].1, KNOWN_V1);
        // Any change of body, time or secret changes v1.
        assert_ne!(
            v1_signature("whsec_test_secret", 1_700_000_001, body),
            KNOWN_V1
        );
        assert_ne!(
            v1_signature("whsec_test_secreT", 1_700_000_000, body),
            KNOWN_V1
        );
        assert_ne!(
            v1_signature("whsec_test_secret", 1_700_000_000, b"{}"),
            KNOWN_V1
        );
    }
}
