//! The sender side of CREATE fragmentation (spec §6.3): cuts a request into
//! fragments that each fit `max_frame_len` and writes any of them, by index,
//! straight into a caller-provided buffer (a packet buffer after the
//! Ethernet/IP/UDP headers). No allocation; random access so a retransmission
//! rewrites every fragment with fresh sequence numbers.

use core::fmt;

use crate::auth::Key;
use crate::create::{CreateFragment, TcpState, CREATE_FIXED_LEN, MAX_REQUEST_LEN};
use crate::error::DecodeError;
use crate::frame::{seal, Body};
use crate::header::{Header, HEADER_LEN, MIN_FRAME_LEN};

/// The largest UDP payload over IPv4 (65535 − 20 − 8): no frame can be longer.
pub const MAX_UDP_FRAME_LEN: usize = 65_507;

/// Why a CREATE could not be split.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SplitError {
    /// `max_frame_len` outside `MIN_FRAME_LEN ..= MAX_UDP_FRAME_LEN`.
    BadFrameLen(usize),
    /// The request is longer than [`MAX_REQUEST_LEN`].
    RequestTooLarge(usize),
    /// The TCP state would be rejected by the receiver; names the field.
    InvalidState(&'static str),
}

impl fmt::Display for SplitError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SplitError::BadFrameLen(n) => write!(
                f,
                "max frame length {n} outside {MIN_FRAME_LEN}..={}",
                MAX_UDP_FRAME_LEN
            ),
            SplitError::RequestTooLarge(n) => {
                write!(f, "request of {n} bytes exceeds {MAX_REQUEST_LEN}")
            }
            SplitError::InvalidState(why) => write!(f, "invalid TCP state: {why}"),
        }
    }
}

impl std::error::Error for SplitError {}

/// Splits one connection's CREATE into fragments.
#[derive(Debug, Clone, Copy)]
pub struct CreateSplitter<'a> {
    state: TcpState,
    request: &'a [u8],
    /// Data bytes in the first fragment (after the state block).
    first_cap: usize,
    /// Data bytes in each later fragment.
    rest_cap: usize,
    count: usize,
}

impl<'a> CreateSplitter<'a> {
    /// Prepares to split `request` (the bytes already acknowledged to the
    /// client) for frames of at most `max_frame_len` bytes (UDP payload:
    /// [`crate::MAX_FRAME_LEN_V4`] or [`crate::MAX_FRAME_LEN_V6`] for a 1500-byte MTU).
    pub fn new(
        state: TcpState,
        request: &'a [u8],
        max_frame_len: usize,
    ) -> Result<CreateSplitter<'a>, SplitError> {
        if !(MIN_FRAME_LEN..=MAX_UDP_FRAME_LEN).contains(&max_frame_len) {
            return Err(SplitError::BadFrameLen(max_frame_len));
        }
        if request.len() > MAX_REQUEST_LEN as usize {
            return Err(SplitError::RequestTooLarge(request.len()));
        }
        state.validate().map_err(invalid)?;
        let expect = state
            .client_isn
            .wrapping_add(1)
            .wrapping_add(request.len() as u32);
        if state.client_next != expect {
            return Err(SplitError::InvalidState(
                "client_next is not client_isn + 1 + request length",
            ));
        }
        let rest_cap = max_frame_len - HEADER_LEN - CREATE_FIXED_LEN;
        // MIN_FRAME_LEN leaves room for the largest (IPv6) state block plus data.
        let first_cap = rest_cap - state.encoded_len();
        let count = if request.len() <= first_cap {
            1
        } else {
            1 + (request.len() - first_cap).div_ceil(rest_cap)
        };
        Ok(CreateSplitter {
            state,
            request,
            first_cap,
            rest_cap,
            count,
        })
    }

    /// How many fragments (frames) the CREATE takes.
    pub fn fragment_count(&self) -> usize {
        self.count
    }

    /// The request being split.
    pub fn request(&self) -> &'a [u8] {
        self.request
    }

    /// The TCP state being sent.
    pub fn state(&self) -> &TcpState {
        &self.state
    }

    /// Fragment `i` (`i < fragment_count()`; later indexes give an empty
    /// fragment at the end of the request).
    pub fn fragment(&self, i: usize) -> CreateFragment<'a> {
        let total = self.request.len();
        let (start, end) = if i == 0 {
            (0, total.min(self.first_cap))
        } else {
            let start = (self.first_cap + (i - 1) * self.rest_cap).min(total);
            (start, (start + self.rest_cap).min(total))
        };
        CreateFragment {
            total_len: total as u32,
            offset: start as u32,
            state: (i == 0).then_some(self.state),
            data: &self.request[start..end],
        }
    }

    /// Length of fragment `i`'s frame: the buffer size [`Self::write`] needs.
    pub fn frame_len(&self, i: usize) -> usize {
        HEADER_LEN + self.fragment(i).encoded_len()
    }

    /// Writes fragment `i` as a tagged frame into `out` and returns its length.
    /// `header.msg_seq` must be fresh for every frame, retransmissions included.
    ///
    /// # Panics
    /// If `out` is shorter than [`Self::frame_len`] (caller bug).
    pub fn write(&self, i: usize, header: &Header, key: &Key, out: &mut [u8]) -> usize {
        seal(header, &Body::Create(self.fragment(i)), key, out)
    }
}

fn invalid(e: DecodeError) -> SplitError {
    SplitError::InvalidState(e.reason())
}
