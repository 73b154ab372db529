//! Keeps the error reference true: every code the server can send is listed.

use tether_core::ErrorCode;

#[test]
fn every_error_code_is_documented() {
    let doc = include_str!("../../../docs/errors.md");
    for code in ErrorCode::ALL {
        assert!(
            doc.contains(&format!("| {} | {} |", code.code(), code.http_status())),
            "docs/errors.md does not document {}",
            code.code()
        );
    }
}
