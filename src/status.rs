//! Status codes: a number from 100 to 599, checked once, when it is made.

use std::fmt;

/// An HTTP status code (RFC 9110 §15): always three digits, from 100 to 599,
/// so that no response can put anything else on the wire.
///
/// The constants name the codes coserve and most handlers use; any other
/// comes from [`StatusCode::from_u16`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct StatusCode(u16);

macro_rules! codes {
    ($($(#[$doc:meta])* $name:ident = $code:literal, $reason:literal;)*) => {
        impl StatusCode {
            $($(#[$doc])* pub const $name: StatusCode = StatusCode($code);)*
        }

        /// The reason phrase RFC 9110 §15 gives a status code, or a
        /// generic one for its class.
        fn reason(code: u16) -> &'static str {
            match code {
                $($code => $reason,)*
                100..=199 => "Informational",
                200..=299 => "Success",
                300..=399 => "Redirection",
                400..=499 => "Client Error",
                _ => "Server Error",
            }
        }
    };
}

codes! {
    /// 100 Continue
    CONTINUE = 100, "Continue";
    /// 101 Switching Protocols
    SWITCHING_PROTOCOLS = 101, "Switching Protocols";
    /// 200 OK
    OK = 200, "OK";
    /// 201 Created
    CREATED = 201, "Created";
    /// 202 Accepted
    ACCEPTED = 202, "Accepted";
    /// 204 No Content
    NO_CONTENT = 204, "No Content";
    /// 206 Partial Content
    PARTIAL_CONTENT = 206, "Partial Content";
    /// 301 Moved Permanently
    MOVED_PERMANENTLY = 301, "Moved Permanently";
    /// 302 Found
    FOUND = 302, "Found";
    /// 303 See Other
    SEE_OTHER = 303, "See Other";
    /// 304 Not Modified
    NOT_MODIFIED = 304, "Not Modified";
    /// 307 Temporary Redirect
    TEMPORARY_REDIRECT = 307, "Temporary Redirect";
    /// 308 Permanent Redirect
    PERMANENT_REDIRECT = 308, "Permanent Redirect";
    /// 400 Bad Request
    BAD_REQUEST = 400, "Bad Request";
    /// 401 Unauthorized
    UNAUTHORIZED = 401, "Unauthorized";
    /// 402 Payment Required
    PAYMENT_REQUIRED = 402, "Payment Required";
    /// 403 Forbidden
    FORBIDDEN = 403, "Forbidden";
    /// 404 Not Found
    NOT_FOUND = 404, "Not Found";
    /// 405 Method Not Allowed
    METHOD_NOT_ALLOWED = 405, "Method Not Allowed";
    /// 406 Not Acceptable
    NOT_ACCEPTABLE = 406, "Not Acceptable";
    /// 408 Request Timeout
    REQUEST_TIMEOUT = 408, "Request Timeout";
    /// 409 Conflict
    CONFLICT = 409, "Conflict";
    /// 410 Gone
    GONE = 410, "Gone";
    /// 411 Length Required
    LENGTH_REQUIRED = 411, "Length Required";
    /// 412 Precondition Failed
    PRECONDITION_FAILED = 412, "Precondition Failed";
    /// 413 Content Too Large
    CONTENT_TOO_LARGE = 413, "Content Too Large";
    /// 414 URI Too Long
    URI_TOO_LONG = 414, "URI Too Long";
    /// 415 Unsupported Media Type
    UNSUPPORTED_MEDIA_TYPE = 415, "Unsupported Media Type";
    /// 416 Range Not Satisfiable
    RANGE_NOT_SATISFIABLE = 416, "Range Not Satisfiable";
    /// 417 Expectation Failed
    EXPECTATION_FAILED = 417, "Expectation Failed";
    /// 422 Unprocessable Content
    UNPROCESSABLE_CONTENT = 422, "Unprocessable Content";
    /// 426 Upgrade Required
    UPGRADE_REQUIRED = 426, "Upgrade Required";
    /// 428 Precondition Required
    PRECONDITION_REQUIRED = 428, "Precondition Required";
    /// 429 Too Many Requests
    TOO_MANY_REQUESTS = 429, "Too Many Requests";
    /// 431 Request Header Fields Too Large
    REQUEST_HEADER_FIELDS_TOO_LARGE = 431, "Request Header Fields Too Large";
    /// 500 Internal Server Error
    INTERNAL_SERVER_ERROR = 500, "Internal Server Error";
    /// 501 Not Implemented
    NOT_IMPLEMENTED = 501, "Not Implemented";
    /// 502 Bad Gateway
    BAD_GATEWAY = 502, "Bad Gateway";
    /// 503 Service Unavailable
    SERVICE_UNAVAILABLE = 503, "Service Unavailable";
    /// 504 Gateway Timeout
    GATEWAY_TIMEOUT = 504, "Gateway Timeout";
    /// 505 HTTP Version Not Supported
    HTTP_VERSION_NOT_SUPPORTED = 505, "HTTP Version Not Supported";
}

impl StatusCode {
    /// The status code `code`, if it is one: 100 to 599.
    pub const fn from_u16(code: u16) -> Option<StatusCode> {
        if code >= 100 && code <= 599 {
            Some(StatusCode(code))
        } else {
            None
        }
    }

    /// The code as a number.
    pub const fn as_u16(self) -> u16 {
        self.0
    }

    /// The reason phrase written after it on the status line.
    pub fn reason(self) -> &'static str {
        reason(self.0)
    }

    /// Whether a response with this status never has a body: 1xx, 204 and
    /// 304 (RFC 9110 §6.4.1).
    pub const fn has_no_body(self) -> bool {
        matches!(self.0, 100..=199 | 204 | 304)
    }

    /// A server error, 5xx.
    pub const fn is_server_error(self) -> bool {
        self.0 >= 500
    }
}

impl TryFrom<u16> for StatusCode {
    type Error = InvalidStatusCode;

    fn try_from(code: u16) -> Result<StatusCode, InvalidStatusCode> {
        StatusCode::from_u16(code).ok_or(InvalidStatusCode(code))
    }
}

impl From<StatusCode> for u16 {
    fn from(status: StatusCode) -> u16 {
        status.0
    }
}

impl PartialEq<u16> for StatusCode {
    fn eq(&self, other: &u16) -> bool {
        self.0 == *other
    }
}

impl fmt::Display for StatusCode {
    /// `404 Not Found`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {}", self.0, self.reason())
    }
}

/// A number that is not a status code (outside 100 to 599).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidStatusCode(pub u16);

impl fmt::Display for InvalidStatusCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} is not a status code (100 to 599)", self.0)
    }
}

impl std::error::Error for InvalidStatusCode {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_three_digit_codes_from_100_to_599_exist() {
        for code in [0, 1, 99, 600, 999, 1000, 2000, u16::MAX] {
            assert_eq!(StatusCode::from_u16(code), None, "{code}");
            assert_eq!(StatusCode::try_from(code), Err(InvalidStatusCode(code)));
        }
        for code in [100, 200, 299, 451, 599] {
            assert_eq!(StatusCode::from_u16(code).map(u16::from), Some(code));
        }
        assert_eq!(StatusCode::NOT_FOUND.to_string(), "404 Not Found");
        assert_eq!(StatusCode::from_u16(299).unwrap().reason(), "Success");
        assert!(StatusCode::NOT_MODIFIED.has_no_body() && !StatusCode::OK.has_no_body());
    }
}
